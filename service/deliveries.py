"""Delivery logs (read scope): deliveries by filter, one delivery with its attempts and operator
actions, and an endpoint's attempt log. Nothing here writes. The console reads through the same
functions (delivery_page, delivery_detail, endpoint_attempts_page).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import InvalidInput
from core.ids import created_ms
from core.models import DeliveryFilter, iso
from service import validation
from service.auth import READING
from service.context import Context, context
from service.problems import Problem

FILTERS = ("endpoint_id", "status", "event_type", "message_id", "since", "until")
ATTEMPT_FIELDS = ("number", "trigger", "started_at", "duration_ms", "request", "response", "error", "outcome")


async def list_deliveries(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    return JSONResponse(await delivery_page(ctx, request.query_params))


async def get_delivery(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    if request.path_params["id"] == "retry":
        # Starlette prefers this route's full match over the POST-only bulk retry route's method mismatch.
        raise Problem(405, "GET is not supported on /v1/deliveries/retry; use POST.", headers={"Allow": "POST"})
    return JSONResponse(await delivery_detail(ctx, delivery_id(request)))


async def list_endpoint_attempts(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    eid = validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
    return JSONResponse(await endpoint_attempts_page(ctx, eid, request.query_params))


# The reads themselves, shared by the JSON routes above and the console (service/console/).


async def delivery_page(ctx: Context, query: QueryParams) -> dict[str, Any]:
    """One page of the delivery log for a query string of filters, `limit` and `cursor`. Newest
    first; the cursor is the last id shown, so deliveries created meanwhile never enter a later page
    and none is shown twice."""
    limit, cursor = validation.page_params(query, FILTERS)
    if cursor is not None and not validation.DELIVERY_ID.fullmatch(cursor):
        raise InvalidInput("cursor", "is not a cursor this API returned")
    wanted = delivery_filter(query)
    if wanted is None:
        return {"data": [], "next_cursor": None}
    deliveries, next_cursor = await ctx.log.list_deliveries(wanted, limit=limit, cursor=cursor)
    return {"data": [d.to_json() for d in deliveries], "next_cursor": next_cursor}


async def delivery_detail(ctx: Context, did: str) -> dict[str, Any]:
    """A delivery with its message, every attempt and the operator actions on it."""
    found = await ctx.log.get_delivery(did)
    delivery, attempts, actions = found.delivery, found.attempts, found.actions
    answer = delivery.to_json()
    return {
        "delivery": answer,
        "message": {
            "id": delivery.message_id,
            "event_type": delivery.event_type,
            "created_at": iso(created_ms(delivery.message_id)),
        },
        "attempts": [attempt_json(a) for a in attempts],
        "next_attempt_at": answer["next_attempt_at"],
        "actions": actions,
    }


async def endpoint_attempts_page(ctx: Context, eid: str, query: QueryParams) -> dict[str, Any]:
    """The endpoint's attempts newest first, across its deliveries."""
    limit, cursor = validation.page_params(query)
    await ctx.store.endpoints.get(eid)  # 404 for an unknown or deleted endpoint, not an empty log
    attempts, next_cursor = await ctx.log.endpoint_attempts(eid, limit=limit, cursor=cursor)
    return {"data": [attempt_json(a) for a in attempts], "next_cursor": next_cursor}


def delivery_filter(query: QueryParams) -> DeliveryFilter | None:
    """The filter the query string asks for; None when it can match nothing (a range ending before 1970)."""
    endpoint_id = validation.single(query, "endpoint_id")
    if endpoint_id is not None and not validation.ENDPOINT_ID.fullmatch(endpoint_id):
        raise InvalidInput("endpoint_id", "must be an endpoint id (ep_...)")
    message_id = validation.single(query, "message_id")
    if message_id is not None and not validation.MESSAGE_ID.fullmatch(message_id):
        raise InvalidInput("message_id", "must be a message id (msg_...)")
    event_type = validation.single(query, "event_type")
    if event_type is not None:
        validation.event_type(event_type, "event_type")
    since = validation.single(query, "since")
    until = validation.single(query, "until")
    since_ms = validation.timestamp(since, "since") if since is not None else None
    until_ms = validation.timestamp(until, "until") if until is not None else None
    if until_ms is not None and until_ms < 0:
        return None
    return DeliveryFilter(
        endpoint_id=endpoint_id,
        statuses=validation.delivery_statuses(query.getlist("status"), "status"),
        event_type=event_type,
        message_id=message_id,
        # Ids encode time from 1970 on: an earlier start is the same as no start.
        since_ms=max(since_ms, 0) if since_ms is not None else None,
        until_ms=until_ms,
    )


def attempt_json(record: dict[str, Any]) -> dict[str, Any]:
    """The wire shape of a stored attempt record (delivery/attempt.py, or reap.lua's "lost" record):
    the documented fields only, so whatever else a record carries stays internal."""
    return {"id": record["id"], "delivery_id": record["delivery_id"],
            **{name: record.get(name) for name in ATTEMPT_FIELDS}}


def delivery_id(request: Request) -> str:
    return validation.path_id(request.path_params["id"], validation.DELIVERY_ID, "delivery")
