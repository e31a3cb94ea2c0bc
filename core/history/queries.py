"""Shared by both adapters: the WHERE clause of a delivery-log filter, the rows-to-domain mapping,
and the endpoint attempt log's cursor. Only portable SQL is built here (row values, IN lists); each
adapter supplies its own placeholder style and runs it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import InvalidInput
from core.ids import created_ms, delivery_id_bounds
from core.models import Delivery, DeliveryFilter, DeliveryStatus, Message

# Columns of hp_delivery in the order `delivery_from_row` reads them.
DELIVERY_COLUMNS = ("id, message_id, endpoint_id, event_type, status, attempts, updated_ms, "
                    "next_attempt_ms, last_code, last_error")

Placeholder = Callable[[int], str]  # 1-based parameter number -> "$1" (PostgreSQL) or "?" (SQLite)


def delivery_where(wanted: DeliveryFilter, cursor: str | None, mark: Placeholder) -> tuple[str, list[Any]]:
    """The conditions and parameters that select the filter's deliveries older than `cursor`."""
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return mark(len(params))

    if wanted.endpoint_id is not None:
        clauses.append(f"endpoint_id = {param(wanted.endpoint_id)}")
    if wanted.statuses:
        marks = ", ".join(param(s.value) for s in sorted(wanted.statuses))
        clauses.append(f"status IN ({marks})")
    if wanted.event_type is not None:
        clauses.append(f"event_type = {param(wanted.event_type)}")
    if wanted.message_id is not None:
        # By the key: a message's deliveries share its creation time and an id range (no index of its own).
        low, high = delivery_id_bounds(wanted.message_id)
        clauses.append(f"created_ms = {param(created_ms(wanted.message_id))} AND id > {param(low)} "
                       f"AND id < {param(high)} AND message_id = {param(wanted.message_id)}")
    if wanted.since_ms is not None:
        clauses.append(f"created_ms >= {param(wanted.since_ms)}")
    if wanted.until_ms is not None:
        clauses.append(f"created_ms <= {param(wanted.until_ms)}")
    if cursor is not None:
        clauses.append(f"(created_ms, id) < ({param(created_ms(cursor))}, {param(cursor)})")
    return (" AND ".join(clauses) or "TRUE"), params


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    did, mid, eid, event_type, status, attempts, updated, due, last_code, last_error = row
    return Delivery(
        id=did,
        message_id=mid,
        endpoint_id=eid,
        event_type=event_type,
        status=DeliveryStatus(status),
        attempts=int(attempts),
        created_at_ms=created_ms(did),
        updated_at_ms=int(updated),
        next_attempt_at_ms=int(due) if due is not None else None,
        last_status_code=int(last_code) if last_code is not None else None,
        last_error=last_error,
    )


def page_of(rows: list[Delivery], limit: int) -> tuple[list[Delivery], str | None]:
    """`rows` was fetched with limit + 1: the extra row only says whether another page follows."""
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def attempt_json(delivery_id: str, number: int, record: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(record)
    answer["id"] = f"{delivery_id}.{number}"
    answer["delivery_id"] = delivery_id
    return answer


def encode_attempt_cursor(recorded_ms: int, delivery_id: str, number: int) -> str:
    raw = f"{recorded_ms}:{delivery_id}.{number}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_attempt_cursor(cursor: str) -> tuple[int, str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        recorded, aid = raw.split(":", 1)
        did, number = aid.rsplit(".", 1)
        return int(recorded), did, int(number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "is not a cursor this API returned") from exc


def day_start(ms: int) -> int:
    return ms - ms % 86_400_000


def message_from_row(mid: str, row: Sequence[Any]) -> Message:
    event_type, payload, trace, delivery_ids, accepted_ms = row
    return Message(id=mid, event_type=event_type, payload_json=payload, created_at_ms=int(accepted_ms),
                   delivery_ids=tuple(d for d in delivery_ids.split(",") if d), trace=trace)
