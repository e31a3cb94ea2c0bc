"""/v1/api-keys: create a scoped key (its plaintext is shown once), list, delete (admin only), and
/v1/api-keys/me, which tells any valid key who it is."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.models import ApiKey, iso
from service import validation
from service.auth import ADMIN_ONLY, BOOTSTRAP
from service.body import read_json
from service.context import context
from service.problems import Problem

logger = logging.getLogger(__name__)

MAX_NAME = 100
# /v1/api-keys/me says this, so a client can tell hookpump from any other server that answers 200.
SERVICE_NAME = "hookpump"


async def create_api_key(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, ADMIN_ONLY)
    body = validation.json_object(await read_json(request, ctx.settings.max_payload_bytes))
    validation.known_fields(body, {"name", "scopes"})
    name = validation.text(validation.required(body, "name"), "name", min_length=1, max_length=MAX_NAME)
    scopes = validation.scopes(validation.required(body, "scopes"))
    key, plaintext = await ctx.store.api_keys.create(name, scopes)
    logger.info("api key %s created with scopes %s", key.id, ",".join(sorted(scopes)))
    return JSONResponse({**api_key_json(key), "key": plaintext}, status_code=201)


async def list_api_keys(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, ADMIN_ONLY)
    limit, cursor = validation.page_params(request.query_params)
    keys, next_cursor = await ctx.store.api_keys.list(limit=limit, cursor=cursor)
    return JSONResponse({"data": [api_key_json(k) for k in keys], "next_cursor": next_cursor})


async def delete_api_key(request: Request) -> Response:
    """The key stops working in this process at once, in other API processes within auth.CACHE_SECONDS."""
    ctx = context(request)
    if request.path_params["id"] == "me":  # /v1/api-keys/me is a route of its own; it has only GET
        raise Problem(
            405, "DELETE is not supported on /v1/api-keys/me; delete a key by its id.", headers={"Allow": "GET"}
        )
    await ctx.auth.require(request, ADMIN_ONLY)
    kid = validation.path_id(request.path_params["id"], validation.API_KEY_ID, "api key")
    await ctx.store.api_keys.delete(kid)
    ctx.auth.forget(kid)
    logger.info("api key %s deleted", kid)
    return Response(status_code=204)


async def current_api_key(request: Request) -> Response:
    """Any valid key, whatever its scopes: which key it is and what it may do (never the key itself).
    A client checks its URL and key with this before relying on them."""
    ctx = context(request)
    key = await ctx.auth.principal(request)
    bootstrap = key is BOOTSTRAP
    identity = {
        **api_key_json(key),
        "created_at": None if bootstrap else iso(key.created_at_ms),
        "bootstrap": bootstrap,
    }
    return JSONResponse({"service": SERVICE_NAME, "version": service_version(), "key": identity})


@cache
def service_version() -> str:
    return version("hookpump")


def api_key_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "created_at": iso(key.created_at_ms),
    }
