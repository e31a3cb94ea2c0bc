"""The console's time text: absolute UTC and relative to two units (pure functions)."""

from __future__ import annotations

import pytest

from service.console.render import absolute, moment, relative, span

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
