"""The command line's pure parts: the listener's capacity window and signature check, time filters,
relative times and rates, error lines, and `top`'s rendering of stats fields it does not know."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from delivery.signing import sign
from hookpump.client import ApiProblem, MissingKey, ServerUnreachable
from hookpump.commands.filters import time_filter
from hookpump.commands.listen import CapacityWindow, parse_capacity, verify
from hookpump.commands.output import (
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    duration,
    error_line,
    exit_code,
    rate,
    relative,
)
from hookpump.commands.top import render

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_the_capacity_window_admits_n_a_second_and_says_when_the_next_fits() -> None:
    window = CapacityWindow(per_second=2)
    assert window.admit(10.0) is None and window.admit(10.4) is None
    assert window.admit(10.5) == pytest.approx(0.5)
    assert window.admit(11.01) is None  # the first has left the window
    assert window.admit(11.2) == pytest.approx(0.2)


@pytest.mark.parametrize(("text", "per_second"), [("4/s", 4), ("120/m", 2), ("30/min", 0.5), ("0.5/s", 0.5)])
def test_capacity_is_parsed_per_second_or_minute(text: str, per_second: float) -> None:
    assert parse_capacity(text) == per_second


@pytest.mark.parametrize("text", ["4", "lots", "4/h", "0/s", "-1/s"])
def test_a_capacity_without_a_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_capacity(text)


def headers(msg_id: str, timestamp: int, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1,b2xk " + sign([secret], msg_id, timestamp, body)}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        ({}, "ok"),
        ({"body": b'{"n":2}'}, "signature does not match the secret"),
        ({"secret": "whsec_" + "QUJD" * 8}, "signature does not match the secret"),
        ({"sent_at": 1000 - 301}, "webhook-timestamp is more than 5 minutes off"),
        ({"drop": "webhook-signature"}, "missing webhook-id, webhook-timestamp or webhook-signature"),
    ],
)  # fmt: skip
def test_verify_accepts_only_a_fresh_signature_over_this_body(change: dict[str, Any], verdict: str) -> None:
    sent_at = change.get("sent_at", 1000)
    signed = headers("msg_1", sent_at, b'{"n":1}', change.get("secret", SECRET))
    signed.pop(change.get("drop", ""), None)
    assert verify(SECRET, signed, change.get("body", b'{"n":1}'), now=1000) == verdict


def test_time_filters_take_durations_ago_and_pass_anything_else_to_the_api() -> None:
    assert time_filter("90m", now=NOW) == "2026-01-01T10:30:00.000Z"
    assert time_filter("2d", now=NOW) == "2025-12-30T12:00:00.000Z"
    assert time_filter("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    assert time_filter("yesterday") == "yesterday"  # the API's 422 names the problem
    assert time_filter(None) is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), ("2026-01-01T11:59:59.600Z", "now"), ("2026-01-01T11:59:30Z", "30s ago"),
     ("2026-01-01T10:00:00Z", "2h ago"), ("2026-01-01T12:05:00Z", "in 5m"), ("2025-12-25T12:00:00Z", "7d ago")],
)  # fmt: skip
def test_relative_times(value: str | None, shown: str) -> None:
    assert relative(value, now=NOW) == shown


def test_durations_and_rates_read_naturally() -> None:
    assert [duration(s) for s in (None, 0.2, 59, 61, 7200)] == ["-", "now", "59s", "1m", "2h"]
    assert [rate(r) for r in (60, 90, 120, 600, 0.5)] == ["60/min", "90/min", "2/s", "10/s", "0.5/min"]


def test_each_error_has_its_exit_code_and_a_line_with_the_fix() -> None:
    unauthorized = ApiProblem(401, {"status": 401, "detail": "This API key is unknown."})
    assert exit_code(unauthorized) == EXIT_REFUSED and "HOOKPUMP_KEY" in error_line(unauthorized)
    assert exit_code(ServerUnreachable("http://x", "connection refused")) == EXIT_UNREACHABLE
    assert exit_code(MissingKey(".hookpump/admin-key")) == EXIT_USAGE
    invalid = ApiProblem(422, {"detail": "Field 'url' is invalid: bad.", "errors": [
        {"field": "url", "message": "bad."}, {"field": "max_in_flight", "message": "too big"}]})  # fmt: skip
    assert error_line(invalid) == "422: Field 'url' is invalid: bad. (max_in_flight: too big)"


def stats(**changes: Any) -> Any:
    minute = {"succeeded": 3, "failed": 0, "retrying": 0, "overloaded": 1}
    base = {
        "endpoint_id": "ep_1", "backlog": 7, "due_now": 2, "in_flight": 1, "counts": {}, "last_minute": minute,
        "last_hour": minute, "success_ratio": 0.75, "rate_limit_per_minute": 600,
        "effective_rate_per_minute": 150.0, "paused": True, "paused_until": "2026-01-01T12:00:05Z",
        "pause_reason": "retry_after", "oldest_pending_at": None, "oldest_pending_age_seconds": 3.0,
        "estimated_drain_seconds": 2.8, "recent_actions": [],
    }  # fmt: skip
    return {**base, **changes}


def screen(*rows: Any) -> str:
    overview: Any = {"counts": {}, "backlog": 7, "endpoints_ready": 1, "oldest_pending_at": None,
                     "oldest_pending_age_seconds": 3.0, "largest_backlogs": [],
                     "pump": {"late": False, "seconds_since_last_run": 0.4}, "workers": [{"id": "w"}]}  # fmt: skip
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(overview, list(rows), {}, fill=False))
    return console.export_text()


def test_top_shows_pace_against_limit_pause_reason_and_fields_a_newer_server_adds() -> None:
    text = screen(stats(loop_state="probing", last_failed_rate_per_minute=300), stats(endpoint_id="ep_idle",
                  backlog=0, due_now=0, in_flight=0, paused=False, last_minute=dict.fromkeys(
                      ("succeeded", "failed", "retrying", "overloaded"), 0)))  # fmt: skip
    (row,) = [line for line in text.splitlines() if "ep_1" in line]
    assert "2.5/s / 10/s" in row and "retry_after (timed)" in row and "75%" in row
    assert "loop_state=probing last_failed_rate_per_minute=300" in row
    assert "ep_idle" not in text  # idle endpoints are left out unless --all
    assert "1 busy of 2" in text
