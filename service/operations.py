"""Operator actions (admin scope): retry or cancel one delivery, retry many by filter in the
background, pause and resume an endpoint. Each is recorded with the acting API key's id. The JSON
routes and the console call the same operation functions (retry_one, cancel_one, start_bulk, ...).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.clock import now_ms
from core.errors import Conflict, InvalidInput, NotFound
from core.ids import new_id
from core.models import ApiKey, Delivery, DeliveryStatus, Endpoint, iso
from core.pacing import INDEFINITE_MS
from core.store import Actor, DeliveryFilter, EndpointFlow, EndpointStore
from service import validation
from service.auth import ADMIN_ONLY, READING
from service.body import read_json
from service.context import Context, context
from service.deliveries import delivery_id

logger = logging.getLogger(__name__)

BULK_FIELDS = frozenset({"endpoint_id", "status", "event_type", "since", "until"})
# Queued and in-flight deliveries are already on their way; only ended ones can be retried.
RETRYABLE = (DeliveryStatus.FAILED.value, DeliveryStatus.SUCCEEDED.value, DeliveryStatus.CANCELLED.value)


def actor(key: ApiKey) -> Actor:
    return Actor(key.id, key.name)


async def retry_delivery(request: Request) -> Response:
    ctx = context(request)
    key = await ctx.auth.require(request, ADMIN_ONLY)
    delivery = await retry_one(ctx, key, delivery_id(request))
    return JSONResponse(delivery.to_json(), status_code=202)


async def cancel_delivery(request: Request) -> Response:
    ctx = context(request)
    key = await ctx.auth.require(request, ADMIN_ONLY)
    return JSONResponse((await cancel_one(ctx, key, delivery_id(request))).to_json())


async def start_bulk_retry(request: Request) -> Response:
    """202 at once; a worker retries the matching deliveries a page at a time (scheduler/jobs.py)."""
    ctx = context(request)
    key = await ctx.auth.require(request, ADMIN_ONLY)
    body = validation.json_object(await read_json(request, ctx.settings.max_payload_bytes))
    started = await start_bulk(ctx, key, body)
    return JSONResponse(started, status_code=202, headers={"Location": started["progress_url"]})


async def get_bulk_retry(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    job_id = validation.path_id(request.path_params["id"], validation.BULK_RETRY_ID, "bulk retry")
    return JSONResponse(await bulk_progress(ctx, job_id))


async def pause_endpoint(request: Request) -> Response:
    """Nothing is sent to the endpoint until it is resumed or `until` passes; messages still queue."""
    ctx = context(request)
    key = await ctx.auth.require(request, ADMIN_ONLY)
    eid = _endpoint_id(request)
    body = await read_json(request, ctx.settings.max_payload_bytes, optional=True)
    until_ms: int | None = None
    if body is not None:
        validation.known_fields(validation.json_object(body), {"until"})
        if "until" in body:
            until_ms = validation.timestamp(body["until"], "until")
            if until_ms <= now_ms():
                raise InvalidInput("until", "must be in the future (leave it out to pause until resumed)")
    return JSONResponse(await pause(ctx, key, eid, until_ms))


async def resume_endpoint(request: Request) -> Response:
    """Ends an operator pause or an overload pause at once (and resets the backoff)."""
    ctx = context(request)
    key = await ctx.auth.require(request, ADMIN_ONLY)
    return JSONResponse(await resume(ctx, key, _endpoint_id(request)))


# The operations themselves, shared by the JSON routes above and the console (service/console/).
# Each takes the acting key, already checked for the admin scope, and raises core.errors exceptions.


async def retry_one(ctx: Context, key: ApiKey, did: str) -> Delivery:
    """An ended delivery goes back to pending, due now, with a fresh retry budget; one waiting for
    its next automatic attempt is made due now ("try now"). Either way it still goes through the
    pump's pacing and waits out any pause."""
    [result] = await ctx.log.retry([did], actor(key), hasten=True)
    if result == "missing":
        raise NotFound("delivery", did)
    if result == "already_queued":
        raise Conflict(f"delivery {did} is being sent right now; if this attempt fails, retry it once its "
                       "result is recorded")
    if result == "message_gone":
        raise Conflict(f"the message of delivery {did} has expired (past the retention), so there is nothing "
                       "to send again; send the message anew")
    logger.info("delivery retried (%s) by %s", result, key.id, extra={"delivery_id": did})
    return (await ctx.log.get_delivery(did)).delivery


async def cancel_one(ctx: Context, key: ApiKey, did: str) -> Delivery:
    [result] = await ctx.store.operations.cancel([did], actor(key))
    if result == "missing":
        # Not in Redis: ended and forgotten (the history knows it), or never existed (NotFound).
        ended = (await ctx.log.get_delivery(did)).delivery
        raise Conflict(f"delivery {did} has already ended (status {ended.status}); there is nothing to cancel")
    if result == "delivering":
        raise Conflict(f"delivery {did} is being sent right now and cannot be cancelled; if it fails, cancel "
                       "it while it waits for its next attempt")
    if result == "terminal":
        current = (await ctx.log.get_delivery(did)).delivery
        raise Conflict(f"delivery {did} has already ended (status {current.status}); there is nothing to cancel")
    logger.info("delivery cancelled by %s", key.id, extra={"delivery_id": did})
    # The history writer may forget a cancelled delivery any moment now: read it through the log.
    return (await ctx.log.get_delivery(did)).delivery


async def start_bulk(ctx: Context, key: ApiKey, body: dict[str, Any]) -> dict[str, Any]:
    """Check the filter in `body`, record the job and hand it to the workers; the 202 answer's body."""
    validation.known_fields(body, BULK_FIELDS)
    wanted = await bulk_filter(body, ctx.store.endpoints)
    job_id = new_id("blk")
    estimate = await ctx.store.monitoring.count_estimate(wanted)
    await ctx.store.operations.start_bulk_retry(job_id, filter_to_json(wanted), actor(key))
    await ctx.jobs.enqueue_bulk_retry(job_id)
    logger.info("bulk retry %s started by %s (about %s deliveries)", job_id, key.id, estimate)
    return {"id": job_id, "state": "queued", "matched_estimate": estimate,
            "progress_url": f"/v1/deliveries/retry/{job_id}"}


async def bulk_estimate(ctx: Context, body: dict[str, Any]) -> int | None:
    """How many deliveries a bulk retry with this filter would match, when an index can tell (the
    same check and count start_bulk makes, without starting anything)."""
    validation.known_fields(body, BULK_FIELDS)
    return await ctx.store.monitoring.count_estimate(await bulk_filter(body, ctx.store.endpoints))


async def bulk_progress(ctx: Context, job_id: str) -> dict[str, Any]:
    raw = await ctx.store.operations.bulk_progress(job_id)
    stored = json.loads(raw["filter"])

    def moment(name: str) -> str | None:
        return iso(int(raw[name])) if raw.get(name) else None

    return {
        "id": job_id,
        "state": raw["state"],
        "filter": {
            "endpoint_id": stored.get("endpoint_id"),
            "status": stored.get("status"),
            "event_type": stored.get("event_type"),
            "since": iso(stored["since_ms"]) if stored.get("since_ms") is not None else None,
            "until": iso(stored["until_ms"]) if stored.get("until_ms") is not None else None,
        },
        "matched": int(raw["matched"]),
        "queued": int(raw["queued"]),
        "skipped": int(raw["skipped"]),
        "by": raw.get("by") or None,
        "created_at": moment("created_ms"),
        "started_at": moment("started_ms"),
        "finished_at": moment("finished_ms"),
    }


async def pause(ctx: Context, key: ApiKey, eid: str, until_ms: int | None) -> dict[str, Any]:
    await ctx.store.operations.pause_endpoint(eid, actor(key), until_ms)
    logger.info("endpoint paused by %s", key.id, extra={"endpoint_id": eid})
    return await endpoint_with_flow(ctx, eid)


async def resume(ctx: Context, key: ApiKey, eid: str) -> dict[str, Any]:
    await ctx.store.operations.resume_endpoint(eid, actor(key))
    logger.info("endpoint resumed by %s", key.id, extra={"endpoint_id": eid})
    return await endpoint_with_flow(ctx, eid)


async def bulk_filter(body: dict[str, Any], endpoints: EndpointStore) -> DeliveryFilter:
    """The bulk retry filter in `body`, checked; a named endpoint must exist (a typo would match nothing)."""
    endpoint_id = body.get("endpoint_id")
    if "endpoint_id" in body:
        if not isinstance(endpoint_id, str) or not validation.ENDPOINT_ID.fullmatch(endpoint_id):
            raise InvalidInput("endpoint_id", "must be an endpoint id (ep_...)")
        try:
            await endpoints.get(endpoint_id)
        except NotFound as exc:
            raise InvalidInput("endpoint_id", f"no endpoint with id {endpoint_id!r}") from exc
    raw_status = body.get("status", [DeliveryStatus.FAILED.value])
    if not isinstance(raw_status, list) or not raw_status or not all(isinstance(s, str) for s in raw_status):
        raise InvalidInput("status", f"must be a non-empty list of statuses ({', '.join(RETRYABLE)})")
    if len(set(raw_status)) < len(raw_status):
        raise InvalidInput("status", "lists a status more than once")
    event_type = validation.event_type(body["event_type"], "event_type") if "event_type" in body else None
    since = validation.timestamp(body["since"], "since") if "since" in body else None
    until = validation.timestamp(body["until"], "until") if "until" in body else None
    return DeliveryFilter(
        endpoint_id=endpoint_id,
        statuses=validation.delivery_statuses(raw_status, "status", RETRYABLE),
        event_type=event_type,
        # Ids encode time from 1970 on (see service/deliveries.py).
        since_ms=max(since, 0) if since is not None else None,
        until_ms=max(until, -1) if until is not None else None,
    )


def filter_to_json(wanted: DeliveryFilter) -> dict[str, Any]:
    """The shape scheduler/jobs.py:filter_from_json reads back."""
    return {
        "endpoint_id": wanted.endpoint_id,
        "status": sorted(s.value for s in wanted.statuses),
        "event_type": wanted.event_type,
        "since_ms": wanted.since_ms,
        "until_ms": wanted.until_ms,
    }


def flow_json(endpoint: Endpoint, flow: EndpointFlow, now: int) -> dict[str, Any]:
    paused = flow.paused_until_ms > now
    return {
        "paused": paused,
        "paused_until": iso(flow.paused_until_ms) if paused and flow.paused_until_ms < INDEFINITE_MS else None,
        "pause_reason": flow.pause_reason.value if paused and flow.pause_reason else None,
        "paused_at": iso(flow.paused_at_ms) if paused and flow.paused_at_ms else None,
        "effective_rate_per_minute": flow.effective_rate_per_minute or float(endpoint.rate_limit_per_minute),
        "backoff_level": flow.backoff_level,
    }


async def endpoint_with_flow(ctx: Context, eid: str) -> dict[str, Any]:
    endpoint = await ctx.store.endpoints.get(eid)
    flow = await ctx.store.endpoints.flow(eid)
    return {**endpoint.to_json(), "flow": flow_json(endpoint, flow, now_ms())}


def _endpoint_id(request: Request) -> str:
    return validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
