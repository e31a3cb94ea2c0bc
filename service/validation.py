"""Field validators for request bodies and query strings. Each returns the clean value or raises
InvalidInput naming the field as the client wrote it ("messages[2].event_type").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import QueryParams

from core.errors import InvalidInput, NotFound
from core.models import DeliveryStatus, Scope

EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_ID_CORE = "[0-9a-hjkmnp-tv-z]{26}"  # core/ids.py: 10 chars of time, 16 of randomness, Crockford base32
ENDPOINT_ID = re.compile(f"ep_{_ID_CORE}")
MESSAGE_ID = re.compile(f"msg_{_ID_CORE}")
API_KEY_ID = re.compile(f"key_{_ID_CORE}")
DELIVERY_ID = re.compile(f"dlv_{_ID_CORE}_[1-9][0-9]{{0,5}}")  # ingest.lua: the message's core, then 1..n
BULK_RETRY_ID = re.compile(f"blk_{_ID_CORE}")
# RFC 3339 section 5.6 (with its note: "t", "z" and a space are allowed); the offset is required.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
MAX_EVENT_TYPES = 100
MAX_ENDPOINT_IDS = 100
PAGE_DEFAULT = 50
PAGE_MAX = 250
PAGE_PARAMS = ("limit", "cursor")
SCOPE_NAMES = tuple(scope.value for scope in Scope)


def json_object(value: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be a JSON object")
    return value


def known_fields(obj: Mapping[str, Any], allowed: Collection[str], prefix: str = "") -> None:
    for name in obj:
        if name not in allowed:
            raise InvalidInput(prefix + name, f"is not a known field (known: {', '.join(sorted(allowed))})")


def required(obj: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    if name not in obj:
        raise InvalidInput(prefix + name, "is required")
    return obj[name]


def integer(value: Any, field: str, low: int, high: int) -> int:
    # JSON has one number type: 60.0 is the integer 60 (as JSON Schema also says); bool is not a number.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be from {low} to {high}, not {value}")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def text(value: Any, field: str, *, max_length: int, min_length: int = 0) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not min_length <= len(value) <= max_length:
        raise InvalidInput(field, f"must be {min_length} to {max_length} characters long, not {len(value)}")
    encodable(value, field)
    return value


def encodable(value: str, field: str) -> None:
    """JSON may escape half a surrogate pair ("\\ud800"); such a string cannot be stored as UTF-8."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(field, "contains an unpaired UTF-16 surrogate escape") from exc


def event_type(value: Any, field: str) -> str:
    if not isinstance(value, str) or not EVENT_TYPE.fullmatch(value):
        raise InvalidInput(field, "must be 1 to 128 characters of letters, digits, '_', '.', ':' or '-'")
    return value


def event_types(value: Any, field: str = "event_types") -> list[str] | None:
    """None means every event type; otherwise a non-empty list of distinct event types."""
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_EVENT_TYPES:
        raise InvalidInput(field, f"must be null (all event types) or a list of 1 to {MAX_EVENT_TYPES} types")
    checked = [event_type(item, f"{field}[{i}]") for i, item in enumerate(value)]
    _distinct(checked, field)
    return checked


def endpoint_ids(value: Any, field: str) -> list[str] | None:
    """None means fan out by event type. An id of the wrong shape is reported like an unknown one."""
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ENDPOINT_IDS:
        raise InvalidInput(field, f"must be a list of 1 to {MAX_ENDPOINT_IDS} endpoint ids")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInput(f"{field}[{i}]", "must be an endpoint id string")
        if not ENDPOINT_ID.fullmatch(item):
            raise InvalidInput(field, f"no endpoint with id {item!r}")
    _distinct(value, field)
    return value


def scopes(value: Any, field: str = "scopes") -> frozenset[Scope]:
    names = ", ".join(SCOPE_NAMES)
    if not isinstance(value, list) or not value:
        raise InvalidInput(field, f"must be a non-empty list of scopes ({names})")
    for i, item in enumerate(value):
        if not isinstance(item, str) or item not in SCOPE_NAMES:
            raise InvalidInput(f"{field}[{i}]", f"must be one of {names}")
    _distinct(value, field)
    return frozenset(Scope(item) for item in value)


def query_names(query: Mapping[str, str], allowed: Collection[str]) -> None:
    """Unknown query parameters are refused like unknown body fields, so a typo does not go unnoticed."""
    for name in query:
        if name not in allowed:
            known = f"(known: {', '.join(sorted(allowed))})" if allowed else "(this route takes none)"
            raise InvalidInput(name, f"is not a query parameter of this route {known}")


def page_params(query: Mapping[str, str], filters: Collection[str] = ()) -> tuple[int, str | None]:
    """`limit` (1..PAGE_MAX, default PAGE_DEFAULT) and `cursor` from a list request's query string;
    `filters` names the route's other query parameters (anything else is refused)."""
    query_names(query, (*PAGE_PARAMS, *filters))
    raw = query.get("limit")
    limit = PAGE_DEFAULT
    if raw is not None:
        if not raw.isascii() or not raw.isdigit():
            raise InvalidInput("limit", f"must be a whole number from 1 to {PAGE_MAX}")
        limit = integer(int(raw), "limit", 1, PAGE_MAX)
    cursor = query.get("cursor")
    if cursor is not None and (not cursor or len(cursor) > 1024):
        raise InvalidInput("cursor", "is not a cursor this API returned")
    return limit, cursor


def timestamp(value: Any, field: str) -> int:
    """An RFC 3339 date-time with a UTC offset, as milliseconds since the epoch (negative before 1970)."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        hint = " (a '+' in a query string must be sent as %2B)" if isinstance(value, str) and " " in value else ""
        raise InvalidInput(field, f"must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z{hint}")
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError as exc:  # a day or hour out of range, or a leap second
        raise InvalidInput(field, f"is not a real moment: {exc}") from exc
    # Subtracting aware datetimes never leaves datetime's range, unlike converting to UTC first
    # (0001-01-01T00:00:00+01:00 is in year 0).
    return (moment - _EPOCH) // _MILLISECOND


def delivery_statuses(values: list[str], field: str, allowed: Collection[str] = ()) -> frozenset[DeliveryStatus]:
    """Statuses given as repeated values and/or comma lists ("failed,cancelled"); `allowed` narrows them."""
    names = allowed or [status.value for status in DeliveryStatus]
    found: set[DeliveryStatus] = set()
    for value in values:
        for name in value.split(","):
            if name not in names:
                raise InvalidInput(field, f"{name[:40]!r} is not one of {', '.join(names)}")
            found.add(DeliveryStatus(name))
    return frozenset(found)


def single(query: QueryParams, name: str) -> str | None:
    """A query parameter that may be given at most once."""
    values = query.getlist(name)
    if len(values) > 1:
        raise InvalidInput(name, "may be given only once")
    return values[0] if values else None


def path_id(value: str, pattern: re.Pattern[str], kind: str) -> str:
    """A path id of the wrong shape names nothing: 404 without asking the store."""
    if not pattern.fullmatch(value):
        raise NotFound(kind, value)
    return value


def _distinct(items: list[Any], field: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise InvalidInput(field, f"lists {item!r} more than once")
        seen.add(item)
