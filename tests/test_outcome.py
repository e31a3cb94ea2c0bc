"""What an HTTP answer means (`classify`) and Retry-After parsing: tables."""

from __future__ import annotations

import email.utils

import pytest

from delivery.client import HttpResult
from delivery.outcome import MAX_RETRY_AFTER, Outcome, classify, parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "error_kind", "expected"),
    [
        (200, None, Outcome.SUCCEEDED),
        (201, None, Outcome.SUCCEEDED),
        (204, None, Outcome.SUCCEEDED),
        (299, None, Outcome.SUCCEEDED),
        (200, "timeout", Outcome.SUCCEEDED),  # the answer was 200; only its body was slow
        (429, None, Outcome.OVERLOADED),
        (503, None, Outcome.OVERLOADED),
        (410, None, Outcome.GONE),
        (408, None, Outcome.RETRY),
        (500, None, Outcome.RETRY),
        (502, None, Outcome.RETRY),
        (504, None, Outcome.RETRY),
        (599, None, Outcome.RETRY),
        (301, None, Outcome.FAILED),
        (302, None, Outcome.FAILED),
        (307, None, Outcome.FAILED),
        (400, None, Outcome.FAILED),
        (401, None, Outcome.FAILED),
        (404, None, Outcome.FAILED),
        (413, None, Outcome.FAILED),
        (422, None, Outcome.FAILED),
        (None, "timeout", Outcome.RETRY),
        (None, "connect", Outcome.RETRY),
        (None, "dns", Outcome.RETRY),
        (None, "reset", Outcome.RETRY),
        (None, "protocol", Outcome.RETRY),
        (None, "forbidden_address", Outcome.FAILED),
        (None, "other", Outcome.RETRY),
    ],
)
def test_classify(status: int | None, error_kind: str | None, expected: Outcome) -> None:
    result = HttpResult(status=status, error_kind=error_kind, error_message="x" if error_kind else None)
    assert classify(result) is expected


def http_date(offset: float) -> str:
    return email.utils.formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # negative: do not wait less than nothing
        ("-0.5", 0.0),
        ("99999999", MAX_RETRY_AFTER),  # absurd: capped at a day
        (http_date(90), 90.0),
        (http_date(-30), 0.0),  # a date in the past means "now"
        (http_date(10 * 24 * 3600), MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Tue, 14 Nov 2023 22:14:20 GMT", 60.0),  # NOW is 22:13:20 that day
        ("soon", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("12 seconds", None),
        ("Mon, 99 Foo 2023 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1.0)


def test_parse_retry_after_of_naive_http_date_is_utc() -> None:
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 -0000", NOW) == pytest.approx(120.0)
