"""/v1/endpoints: create, list, read, update, delete, and rotate an endpoint's signing secret.

Secrets leave the API twice only: in the create answer and in the rotate answer. Values of credential
headers (core/credentials.py) never leave it: they read as the redaction marker, which an update may send
back to keep the stored value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.addresses import check_host, url_target, validate_url
from core.credentials import REDACTED, is_write_only
from core.errors import InvalidInput
from core.models import Endpoint, iso
from core.settings import Settings
from core.store import Actor
from delivery.request import validate_extra_headers, validate_secret_header_names
from delivery.signing import decode_secret, generate_secret
from service import validation
from service.auth import ADMIN_ONLY, READING
from service.body import read_json
from service.context import Context, context

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "rate_limit_per_minute": 60,
    "min_rate_per_minute": 1,
    "max_in_flight": 10,
    "event_types": None,
    "headers": {},
    "secret_headers": (),
    "description": "",
    "enabled": True,
    "trace_propagation": True,
}
CREATE_FIELDS = frozenset({"url", "secret", *DEFAULTS})
RATE_FIELDS = frozenset({"rate_limit_per_minute", "min_rate_per_minute"})
UPDATE_FIELDS = CREATE_FIELDS - {"secret"}
MAX_DESCRIPTION = 1024


async def create_endpoint(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, ADMIN_ONLY)
    body = validation.json_object(await read_json(request, ctx.settings.max_payload_bytes))
    validation.known_fields(body, CREATE_FIELDS)
    validation.required(body, "url")
    secret = checked_secret(body["secret"]) if "secret" in body else generate_secret()
    fields = {**DEFAULTS, **await endpoint_fields(body, ctx.settings)}
    check_rate_range(fields["rate_limit_per_minute"], fields["min_rate_per_minute"])
    for name, value in fields["headers"].items():
        if value == REDACTED and is_write_only(name, fields["secret_headers"]):
            raise _marker_without_value(name)
    endpoint = await ctx.store.endpoints.create(fields, secret)
    logger.info("endpoint created", extra={"endpoint_id": endpoint.id})
    return JSONResponse({**endpoint.to_json(), "secret": secret}, status_code=201,
                        headers={"Location": f"/v1/endpoints/{endpoint.id}"})


async def list_endpoints(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    return JSONResponse(await endpoint_page(ctx, request.query_params))


async def endpoint_page(ctx: Context, query: Mapping[str, str]) -> dict[str, Any]:
    """One page of endpoints, oldest first (the console lists them through this too)."""
    limit, cursor = validation.page_params(query)
    endpoints, next_cursor = await ctx.store.endpoints.list(limit=limit, cursor=cursor)
    return {"data": [e.to_json() for e in endpoints], "next_cursor": next_cursor}


async def get_endpoint(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    endpoint = await ctx.store.endpoints.get(_endpoint_id(request))
    return JSONResponse(endpoint.to_json())


async def update_endpoint(request: Request) -> Response:
    ctx = context(request)
    key = await ctx.auth.require(request, ADMIN_ONLY)
    eid = _endpoint_id(request)
    body = validation.json_object(await read_json(request, ctx.settings.max_payload_bytes))
    if "secret" in body:
        raise InvalidInput("secret", f"cannot be changed here; use POST /v1/endpoints/{eid}/secret/rotate")
    validation.known_fields(body, UPDATE_FIELDS)
    fields = await endpoint_fields(body, ctx.settings)
    wanted = {"enabled", "headers", "secret_headers", *RATE_FIELDS}
    before = await ctx.store.endpoints.get(eid) if fields.keys() & wanted else None
    if before is not None:
        keep_write_only_values(fields, before)
    if before is not None and fields.keys() & RATE_FIELDS:
        check_rate_range(fields.get("rate_limit_per_minute", before.rate_limit_per_minute),
                         fields.get("min_rate_per_minute", before.min_rate_per_minute))
    endpoint = await ctx.store.endpoints.update(eid, fields)
    if before is not None and before.enabled != endpoint.enabled:
        # Enabling is how an operator takes back an endpoint hookpump disabled (410): say who did, and why
        # it had been disabled.
        action = "enable" if endpoint.enabled else "disable"
        await ctx.store.operations.record_endpoint_action(
            eid, action, Actor(key.id, key.name), disabled_reason=before.disabled_reason
        )
    logger.info("endpoint updated", extra={"endpoint_id": eid})
    return JSONResponse(endpoint.to_json())


async def delete_endpoint(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, ADMIN_ONLY)
    eid = _endpoint_id(request)
    await ctx.store.endpoints.delete(eid)
    logger.info("endpoint deleted", extra={"endpoint_id": eid})
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    """The new secret signs from now on; older ones keep signing for settings.secret_grace seconds."""
    ctx = context(request)
    await ctx.auth.require(request, ADMIN_ONLY)
    eid = _endpoint_id(request)
    body = await read_json(request, ctx.settings.max_payload_bytes, optional=True)
    secret = generate_secret()
    if body is not None:
        validation.known_fields(validation.json_object(body), {"secret"})
        if "secret" in body:
            secret = checked_secret(body["secret"])
    endpoint = await ctx.store.endpoints.rotate_secret(eid, secret, ctx.settings.secret_grace)
    valid_until = max(s.expires_at_ms for s in endpoint.secrets if s.expires_at_ms is not None)
    logger.info("endpoint secret rotated", extra={"endpoint_id": eid})
    return JSONResponse({"secret": secret, "previous_secrets_valid_until": iso(valid_until)})


def keep_write_only_values(fields: dict[str, Any], before: Endpoint) -> None:
    """An update's headers with each write-only value sent back as the redaction marker put back to the
    stored value (in `fields`). A name may not lose its secret mark while its stored value is kept, as
    that would show a value hookpump never showed: send a new value with the unmarking."""
    marks = fields.get("secret_headers", before.secret_headers)
    stored = {name.lower(): value for name, value in before.headers.items()
              if is_write_only(name, before.secret_headers)}  # fmt: skip
    kept: set[str] = set(stored) if "headers" not in fields else set()
    if "headers" in fields:
        headers: dict[str, str] = {}
        for name, value in fields["headers"].items():
            if value == REDACTED and name.lower() in stored:
                value = stored[name.lower()]
                kept.add(name.lower())
            elif value == REDACTED and is_write_only(name, marks):
                raise _marker_without_value(name)
            headers[name] = value
        fields["headers"] = headers
    for name in sorted(kept):
        if not is_write_only(name, marks):
            raise InvalidInput(
                "secret_headers",
                f"{name!r} keeps its stored value, which stays write-only; send a new value for it to unmark it",
            )


def _marker_without_value(name: str) -> InvalidInput:
    return InvalidInput("headers", f"the value of {name!r} is the redaction marker {REDACTED!r} and there is "
                                   "no stored value to keep; send the value itself")


def check_rate_range(ceiling: int, floor: int) -> None:
    """The adaptive pace moves between the floor and the ceiling, so the floor cannot be above it."""
    if floor > ceiling:
        raise InvalidInput("min_rate_per_minute", f"must not exceed rate_limit_per_minute ({ceiling})")


async def endpoint_fields(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The endpoint fields present in `body`, checked; the URL last, since it may need a DNS lookup."""
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name in RATE_FIELDS:
            fields[name] = validation.integer(value, name, 1, 60_000)
        elif name == "max_in_flight":
            fields[name] = validation.integer(value, name, 1, 1000)
        elif name == "event_types":
            fields[name] = validation.event_types(value)
        elif name == "headers":
            fields[name] = validate_extra_headers(value)
        elif name == "secret_headers":
            fields[name] = validate_secret_header_names(value)
        elif name == "description":
            fields[name] = validation.text(value, name, max_length=MAX_DESCRIPTION)
        elif name in ("enabled", "trace_propagation"):
            fields[name] = validation.boolean(value, name)
    if "url" in body:
        url = validate_url(body["url"])
        # A lone surrogate escape in the path passes validate_url but could not be stored as UTF-8.
        validation.encodable(url, "url")
        host, port = url_target(url)
        await check_host(host, port, settings.allow_private_targets)
        fields["url"] = url
    return fields


def checked_secret(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("secret", "must be a whsec_ string")
    decode_secret(value)
    return value


def _endpoint_id(request: Request) -> str:
    return validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
