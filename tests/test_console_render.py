"""The console's time text: absolute UTC and relative to two units (pure functions)."""

from __future__ import annotations

import pytest

from service.console.render import moment
from service.console.words import absolute, pace_text, pause_text, relative, span, utc_time

NOW = 1_764_510_000.0  # 2025-11-30T13:40:00Z


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (0.4, "0 s"), (12, "12 s"), (60, "1 min"), (185, "3 min 5 s"), (3600, "1 h"),
    (3 * 3600 + 125, "3 h 2 min"), (86400 * 2 + 3600 * 5 + 7, "2 d 5 h"), (-90, "1 min 30 s"),
])
def test_span_keeps_two_units(seconds: float, text: str) -> None:
    assert span(seconds) == text


@pytest.mark.parametrize(("moment_text", "text"), [
    ("2025-11-30T13:40:00.300Z", "now"), ("2025-11-30T13:39:48.000Z", "12 s ago"),
    ("2025-11-30T13:45:00.000Z", "in 5 min"), ("2025-11-29T13:40:00.000Z", "1 d ago"),
    (None, ""),
])
def test_relative_time(moment_text: str | None, text: str) -> None:
    assert relative(moment_text, now=NOW) == text


def test_absolute_time_and_markup_escape_what_they_are_given() -> None:
    assert absolute("2025-11-30T13:40:00.123Z") == "2025-11-30 13:40:00 UTC"
    html = str(moment("2025-11-30T13:40:00.123Z"))
    assert html.startswith('<time datetime="2025-11-30T13:40:00.123Z" title="2025-11-30T13:40:00.123Z">')
    assert str(moment(None)) == '<span class="none">-</span>'


@pytest.mark.parametrize(("reason", "until", "text"), [
    ("retry_after", "2025-11-30T13:40:25.000Z",
     "paused until 13:40:25 UTC (in 25 s): the receiver asked to wait (Retry-After)"),
    ("backoff", "2025-12-01T01:00:00.000Z", "paused until 2025-12-01 01:00:00 UTC (in 11 h 20 min): the receiver "
     "refused every request (429 or 503 without Retry-After), so sending backs off"),
    ("operator", None, "paused until resumed: an operator paused it"),
    ("gone", None, "disabled: the receiver answered 410 Gone, so the endpoint was disabled"),
    ("disabled", None, "disabled: an operator disabled it"),
    (None, "2025-11-30T13:41:00.000Z", "paused until 13:41:00 UTC (in 1 min): the reason was not recorded"),
])
def test_a_pause_is_said_as_a_sentence(reason: str | None, until: str | None, text: str) -> None:
    assert pause_text(reason, until, now=NOW) == text


def test_the_pace_leaves_out_what_it_has_not_learnt() -> None:
    quiet = {"state": "steady", "last_failed_rate_per_minute": None, "accepted_rate_per_minute": None,
             "last_cut_at": None, "refused_whatever_the_rate": 0.0, "overloads_since_success": 0}
    assert pace_text(quiet, now=NOW) == "steady at its limit"
    learnt = {**quiet, "state": "probing", "last_failed_rate_per_minute": 300.0, "last_cut_at": "2025-11-30T13:39:00Z",
              "refused_whatever_the_rate": 0.25, "overloads_since_success": 1}
    assert pace_text(learnt, now=NOW) == ("probing (refused at 300.0/min; last slowed at 13:39:00 UTC; 25% refused "
                                          "whatever the rate; 1 refusal since the last success)")
    assert utc_time("2025-11-29T23:59:59.000Z", now=NOW) == "2025-11-29 23:59:59 UTC"
