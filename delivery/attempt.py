"""One delivery attempt for the pump: build and sign the request, send it, classify the answer, and
describe it as a JSON-ready attempt record."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.credentials import redact
from core.models import iso
from delivery.client import DeliveryClient, HttpResult
from delivery.outcome import Outcome, classify, parse_retry_after
from delivery.request import build_headers

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptReport:
    outcome: Outcome
    status_code: int | None
    retry_after: float | None  # seconds the receiver asked us to wait (Retry-After), if it did
    record: dict[str, Any]  # the attempt record, ready for json.dumps
    error: str | None  # short text for Delivery.last_error; None on success
    started_ms: int = 0  # when it was sent (the record's started_at)


async def attempt_delivery(
    client: DeliveryClient,
    *,
    url: str,
    msg_id: str,
    event_type: str,
    payload_json: str,
    secrets: Sequence[str],
    extra_headers: Mapping[str, str],
    traceparent: str | None,
    attempt_number: int,
    trigger: str,
    now: float | None = None,
    secret_headers: Collection[str] = (),
) -> AttemptReport:
    """Send one attempt of message `msg_id`; never raises for a receiver's or the network's failure.
    `now` (unix seconds) is the signing timestamp and the record's start; `payload_json` goes out
    byte for byte as signed, never re-serialised. `secret_headers`: extra header names (lower case) the
    endpoint's owner marked write-only, hidden in the record as credentials are."""
    started = time.time() if now is None else now
    body = payload_json.encode()
    headers = build_headers(
        msg_id=msg_id,
        timestamp=int(started),
        body=body,
        secrets=secrets,
        extra_headers=extra_headers,
        user_agent=client.user_agent,
        traceparent=traceparent,
    )
    result = await client.send(url, body, headers)
    outcome = classify(result)
    retry_after = parse_retry_after(result.headers.get("retry-after"), started + result.duration_ms / 1000)
    error = _error_text(result, outcome)
    if error is not None:
        logger.debug("attempt %d of %s (%s) to %s: %s", attempt_number, msg_id, event_type, url, error)
    record: dict[str, Any] = {
        "number": attempt_number,
        "trigger": trigger,
        "started_at": iso(int(started * 1000)),
        "duration_ms": round(result.duration_ms, 3),
        "request": {"url": url, "headers": redact(headers, secret_headers)},
        "response": None
        if result.status is None
        else {
            "status": result.status,
            "headers": result.headers,
            "body": result.body_excerpt,
            "body_truncated": result.body_truncated,
        },
        "error": None
        if result.error_kind is None
        else {
            "kind": result.error_kind,
            "message": result.error_message,
        },
        "outcome": outcome.value,
    }
    return AttemptReport(outcome, result.status, retry_after, record, error, int(started * 1000))


def _error_text(result: HttpResult, outcome: Outcome) -> str | None:
    if result.status is None:
        return f"{result.error_kind}: {result.error_message}"
    if outcome is Outcome.SUCCEEDED:
        return None
    return f"HTTP {result.status}"
