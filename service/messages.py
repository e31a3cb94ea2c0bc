"""/v1/messages: accept one message or a batch (202, one atomic ingest each) and read a message back.

This is the hot path (thousands of requests a second): no schema library, one Redis call per
request, cached auth, and the body is hashed only when an Idempotency-Key asks for it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import InvalidInput
from core.models import ApiKey, iso
from core.store import Accepted, Idempotency, NewMessage
from core.telemetry import Span, traceparent_of
from service import validation
from service.auth import READING_MESSAGES, SENDING
from service.body import read_json
from service.context import Context, context
from service.problems import Problem
from service.telemetry import IngestScope

MESSAGE_FIELDS = frozenset({"event_type", "payload", "endpoint_ids"})
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# A batch body may hold max_batch_messages full payloads, but never more than this.
MAX_BATCH_BODY = 32 * 1024 * 1024


async def send_message(request: Request) -> Response:
    ctx = context(request)
    if ctx.telemetry.tracer is None:  # tracing off: not even a no-op span on the hot path
        return await _send_message(request, ctx, None)
    span = ctx.telemetry.start_ingest(request, "POST /v1/messages")
    with IngestScope(span):
        return await _send_message(request, ctx, span)


async def _send_message(request: Request, ctx: Context, span: Span | None) -> Response:
    key = await ctx.auth.require(request, SENDING)
    body = await read_json(request, ctx.settings.max_payload_bytes)
    # The ingest span's context is stored with the message: each attempt's span links back to it.
    trace = "" if span is None else traceparent_of(span)
    message = new_message(body, "", ctx.settings.max_payload_bytes, trace)
    await check_fanout(ctx, [message])
    accepted = await ctx.store.messages.ingest([message], idempotency(request, key, body))
    answer = accepted_json(accepted.messages[0])
    _count(ctx, accepted, span)
    return _accepted(answer, accepted, location=f"/v1/messages/{answer['id']}")


async def send_batch(request: Request) -> Response:
    """All messages are accepted in one atomic step, or none is."""
    ctx = context(request)
    if ctx.telemetry.tracer is None:
        return await _send_batch(request, ctx, None)
    span = ctx.telemetry.start_ingest(request, "POST /v1/messages/batch")
    with IngestScope(span):
        return await _send_batch(request, ctx, span)


async def _send_batch(request: Request, ctx: Context, span: Span | None) -> Response:
    key = await ctx.auth.require(request, SENDING)
    settings = ctx.settings
    limit = min(settings.max_batch_messages * settings.max_payload_bytes, MAX_BATCH_BODY)
    body = validation.json_object(await read_json(request, limit))
    validation.known_fields(body, {"messages"})
    items = validation.required(body, "messages")
    if not isinstance(items, list) or not 1 <= len(items) <= settings.max_batch_messages:
        raise InvalidInput("messages", f"must be a list of 1 to {settings.max_batch_messages} messages")
    trace = "" if span is None else traceparent_of(span)
    messages = [
        new_message(item, f"messages[{i}].", settings.max_payload_bytes, trace) for i, item in enumerate(items)
    ]
    await check_fanout(ctx, messages)
    accepted = await ctx.store.messages.ingest(messages, idempotency(request, key, body))
    _count(ctx, accepted, span)
    return _accepted({"messages": [accepted_json(m) for m in accepted.messages]}, accepted)


async def get_message(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING_MESSAGES)
    if request.path_params["id"] == "batch":
        # Starlette prefers this route's full match over the POST-only batch route's method mismatch.
        raise Problem(405, "GET is not supported on /v1/messages/batch; use POST.", headers={"Allow": "POST"})
    mid = validation.path_id(request.path_params["id"], validation.MESSAGE_ID, "message")
    message = await ctx.log.get_message(mid)
    deliveries = await ctx.log.message_deliveries(message)
    return JSONResponse({
        "id": message.id,
        "event_type": message.event_type,
        "payload": json.loads(message.payload_json),
        "created_at": iso(message.created_at_ms),
        "deliveries": [d.to_json() for d in deliveries],
    })


def new_message(item: Any, prefix: str, max_payload_bytes: int, trace: str = "") -> NewMessage:
    """One message of a request, checked. `prefix` locates it in a batch ("messages[3]."); `trace` is
    the ingest span's traceparent ("" when tracing is off)."""
    if not isinstance(item, dict):
        raise InvalidInput(prefix.rstrip(".") or "body", "must be a JSON object")
    validation.known_fields(item, MESSAGE_FIELDS, prefix)
    event_type = validation.event_type(validation.required(item, "event_type", prefix), prefix + "event_type")
    payload = validation.required(item, "payload", prefix)
    endpoint_ids = validation.endpoint_ids(item.get("endpoint_ids"), prefix + "endpoint_ids")
    try:
        payload_json = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(payload_json) if payload_json.isascii() else len(payload_json.encode())
    except UnicodeEncodeError as exc:
        raise InvalidInput(prefix + "payload", "contains an unpaired UTF-16 surrogate escape") from exc
    except ValueError as exc:  # a number such as 1e400 that overflowed to infinity
        raise InvalidInput(prefix + "payload", "numbers must be finite (one overflows a double)") from exc
    if size > max_payload_bytes:
        raise Problem(413, f"{prefix}payload is {size} bytes as compact JSON; the limit is "
                      f"{max_payload_bytes} bytes per message.")
    return NewMessage(event_type=event_type, payload_json=payload_json, endpoint_ids=endpoint_ids, trace=trace)


async def check_fanout(ctx: Context, messages: list[NewMessage]) -> None:
    """413 before anything is written if the request would create more deliveries than one request may
    (HOOKPUMP_MAX_DELIVERIES_PER_REQUEST): ingest writes them all in one Lua call, which holds Redis
    for every other client meanwhile. An endpoint subscribed between this count and the ingest can
    add its share; the count is of the request as it stands now."""
    cap = ctx.settings.max_deliveries_per_request
    count = await ctx.store.messages.fanout_over(messages, cap)
    if count is not None:
        raise Problem(413, f"This request would create {count} deliveries (messages x the endpoints each one "
                           f"goes to); the limit is {cap} per request (HOOKPUMP_MAX_DELIVERIES_PER_REQUEST). "
                           "Send the messages in smaller batches.")


def idempotency(request: Request, key: ApiKey, body: Any) -> Idempotency | None:
    """The request's Idempotency-Key, scoped to the caller's API key, with a hash of the parsed body
    (canonical JSON, so whitespace and key order do not make two equal requests differ)."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput("Idempotency-Key", "must be 1 to 255 visible ASCII characters (no spaces)")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return Idempotency(principal=key.id, key=value, body_hash=hashlib.sha256(canonical.encode()).hexdigest())


def accepted_json(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message["id"],
        "event_type": message["event_type"],
        "created_at": iso(int(message["created_ms"])),
        "deliveries": message["deliveries"],
    }


def _count(ctx: Context, accepted: Accepted, span: Span | None) -> None:
    created = sum(len(m["deliveries"]) for m in accepted.messages)
    if not accepted.replayed:
        ctx.telemetry.accepted.add(amount=len(accepted.messages))
        ctx.telemetry.created.add(amount=created)
    if span is not None:
        ids = [m["id"] for m in accepted.messages]
        span.set_attributes({"hookpump.messages": len(ids), "hookpump.deliveries": created,
                             "hookpump.idempotent_replay": accepted.replayed})  # fmt: skip
        if len(ids) == 1:
            span.set_attribute("hookpump.message.id", ids[0])
        else:  # a batch: its first ids only (span attributes are not for bulk data)
            span.set_attribute("hookpump.message.ids", ids[:100])


def _accepted(answer: dict[str, Any], accepted: Accepted, location: str | None = None) -> Response:
    headers = {"Location": location} if location else {}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer, status_code=202, headers=headers)
