"""The headers of an outgoing webhook request, and the check of endpoint-supplied extra headers and of
the names marked secret. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from core.errors import InvalidInput
from delivery.signing import sign

CONTENT_TYPE = "application/json"
MAX_EXTRA_HEADERS = 20
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 1024

# Headers an endpoint may not set: the signature and its inputs, what describes the body, and the
# hop-by-hop and framing headers whose override would break or smuggle the request itself.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "user-agent",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "traceparent",
        "tracestate",
    }
)
RESERVED_PREFIXES = ("webhook-", "proxy-")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 7230 token
# Visible ASCII, space and tab; anything else either splits the header (CR, LF, NUL) or is not
# portable (httpx and many servers refuse non-ASCII values).
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def is_reserved(name: str) -> bool:
    lowered = name.lower()
    return lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES)


def build_headers(
    *,
    msg_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str],
    extra_headers: Mapping[str, str],
    user_agent: str,
    traceparent: str | None,
) -> dict[str, str]:
    """Every header of one attempt. Extra headers that name a reserved header are skipped (they were
    refused on input; this keeps stored data from older versions harmless)."""
    headers = {
        "content-type": CONTENT_TYPE,
        "user-agent": user_agent,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
    }
    for name, value in extra_headers.items():
        if not is_reserved(name):
            headers[name] = value
    if traceparent is not None:
        headers["traceparent"] = traceparent
    return headers


def validate_secret_header_names(names: object) -> tuple[str, ...]:
    """The header names an endpoint's owner marks secret, lower case and sorted; InvalidInput naming the
    first problem. A name need not be among the headers yet: the mark holds for whatever value it gets."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InvalidInput("secret_headers", "must be a list of header names")
    if len(names) > MAX_EXTRA_HEADERS:
        raise InvalidInput("secret_headers", f"at most {MAX_EXTRA_HEADERS} names are allowed, got {len(names)}")
    for name in names:
        if len(name) > MAX_HEADER_NAME or not _TOKEN.fullmatch(name):
            raise InvalidInput("secret_headers", f"{name[:MAX_HEADER_NAME]!r} is not a valid header name")
    return tuple(sorted({name.lower() for name in names}))


def validate_extra_headers(headers: object) -> dict[str, str]:
    """An endpoint's extra headers, checked; InvalidInput("headers", ...) naming the first problem."""
    if not isinstance(headers, Mapping):
        raise InvalidInput("headers", "must be an object of header names to string values")
    if len(headers) > MAX_EXTRA_HEADERS:
        raise InvalidInput("headers", f"at most {MAX_EXTRA_HEADERS} headers are allowed, got {len(headers)}")
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInput("headers", "must be an object of header names to string values")
        if len(name) > MAX_HEADER_NAME or not _TOKEN.fullmatch(name):
            raise InvalidInput("headers", f"{name[:MAX_HEADER_NAME]!r} is not a valid header name")
        if is_reserved(name):
            raise InvalidInput("headers", f"{name!r} is set by hookpump and cannot be overridden")
        if name.lower() in seen:
            raise InvalidInput("headers", f"{name!r} is given more than once (names are case-insensitive)")
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidInput("headers", f"the value of {name!r} is longer than {MAX_HEADER_VALUE} characters")
        if not _FIELD_VALUE.fullmatch(value):
            raise InvalidInput(
                "headers",
                f"the value of {name!r} may only contain printable ASCII (no CR, LF, NUL or other control characters)",
            )
        seen.add(name.lower())
        checked[name] = value
    return checked
