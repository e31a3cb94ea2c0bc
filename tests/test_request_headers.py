"""Outgoing headers: what hookpump sets, what endpoints may add, and what records hide."""

from __future__ import annotations

from typing import Any

import pytest

from core.credentials import REDACTED, redact
from core.errors import InvalidInput
from delivery.request import build_headers, validate_extra_headers
from delivery.signing import generate_secret

SECRET = generate_secret()


def headers(extra: dict[str, str] | None = None, traceparent: str | None = None) -> dict[str, str]:
    return build_headers(
        msg_id="msg_1",
        timestamp=1_700_000_000,
        body=b'{"a":1}',
        secrets=[SECRET],
        extra_headers=extra or {},
        user_agent="hookpump/test",
        traceparent=traceparent,
    )


def test_standard_headers_are_set() -> None:
    built = headers()
    assert built["content-type"] == "application/json"
    assert built["user-agent"] == "hookpump/test"
    assert built["webhook-id"] == "msg_1"
    assert built["webhook-timestamp"] == "1700000000"
    assert built["webhook-signature"].startswith("v1,")
    assert "traceparent" not in built


def test_extra_headers_and_traceparent_are_added() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    built = headers({"X-Tenant": "acme", "Authorization": "Bearer abc"}, traceparent=trace)
    assert built["X-Tenant"] == "acme" and built["Authorization"] == "Bearer abc"
    assert built["traceparent"] == trace


@pytest.mark.parametrize(
    "name",
    [
        "Webhook-Signature",
        "webhook-id",
        "WEBHOOK-TIMESTAMP",
        "webhook-anything",
        "Content-Type",
        "content-length",
        "Host",
        "User-Agent",
        "Transfer-Encoding",
        "Connection",
        "traceparent",
    ],
)
def test_reserved_names_cannot_be_overridden(name: str) -> None:
    built = headers({name: "evil"})
    assert "evil" not in built.values()
    with pytest.raises(InvalidInput, match="cannot be overridden"):
        validate_extra_headers({name: "evil"})


def test_valid_extra_headers_pass() -> None:
    given = {"X-Tenant": "acme", "Authorization": "Bearer abc.def", "X-Empty": "", "X-Tab": "a\tb"}
    assert validate_extra_headers(given) == given


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (None, "must be an object"),
        (["X-A", "b"], "must be an object"),
        ("X-A: b", "must be an object"),
        ({"X-A": 1}, "must be an object"),
        ({"X-A": None}, "must be an object"),
        ({1: "b"}, "must be an object"),
        ({"X-A": "b\r\nX-Injected: 1"}, "CR, LF"),
        ({"X-A": "b\nc"}, "CR, LF"),
        ({"X-A": "b\rc"}, "CR, LF"),
        ({"X-A": "b\x00c"}, "NUL"),
        ({"X-A": "b\x7f"}, "control"),
        ({"X-A": "é"}, "printable ASCII"),
        ({"X A": "b"}, "not a valid header name"),
        ({"X-A:": "b"}, "not a valid header name"),
        ({"": "b"}, "not a valid header name"),
        ({"X-Ä": "b"}, "not a valid header name"),
        ({"X-A\r\nX-B": "b"}, "not a valid header name"),
        ({"X-A": "b" * 1025}, "longer than 1024"),
        ({f"X-{i}": "v" for i in range(21)}, "at most 20"),
        ({"X-A": "1", "x-a": "2"}, "more than once"),
    ],
)
def test_bad_extra_headers_are_rejected(given: Any, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_extra_headers(given)
    assert caught.value.field == "headers"
    assert problem in caught.value.problem


def test_twenty_headers_and_1024_char_values_are_the_limits() -> None:
    validate_extra_headers({f"X-{i}": "v" * 1024 for i in range(20)})


def test_redact_hides_credentials_and_keeps_the_rest() -> None:
    built = headers(
        {
            "Authorization": "Bearer abc",
            "X-Api-Key": "k1",
            "Cookie": "s=1",
            "X-Auth-User": "u",
            "X-Client-Secret": "s",
            "X-Access-Token": "t",
            "Stripe-Key": "sk",
            "X-Tenant": "acme",
        }
    )
    redacted = redact(built)
    for name in (
        "webhook-signature",
        "Authorization",
        "X-Api-Key",
        "Cookie",
        "X-Auth-User",
        "X-Client-Secret",
        "X-Access-Token",
        "Stripe-Key",
    ):
        assert redacted[name] == REDACTED
    for name in ("X-Tenant", "webhook-id", "webhook-timestamp", "content-type", "user-agent"):
        assert redacted[name] == built[name]
    assert built["Authorization"] == "Bearer abc"  # a copy: the request still carries the credential
