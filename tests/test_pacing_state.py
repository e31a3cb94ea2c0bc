"""What an endpoint's pace is doing, named from its flow state (core/pacing.py, pure)."""

from __future__ import annotations

import pytest

from core.models import PauseReason
from core.pacing import INDEFINITE_MS, Pace, PaceState, pace_from_flow

NOW = 1_000_000


def pace(**changes: object) -> Pace:
    fields: dict[str, object] = {
        "ceiling_per_minute": 600, "effective_per_minute": 600.0, "last_failed_per_minute": None,
        "last_cut_ms": None, "overloads_since_success": 0, "paused_until_ms": 0, "pause_reason": None,
    }
    fields.update(changes)
    return Pace(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, PaceState.STEADY),
        ({"effective_per_minute": 480.0, "last_failed_per_minute": 600.0}, PaceState.PROBING),
        ({"paused_until_ms": NOW + 1, "pause_reason": PauseReason.RETRY_AFTER}, PaceState.RETRY_AFTER),
        ({"paused_until_ms": NOW + 1, "pause_reason": PauseReason.BACKOFF}, PaceState.BACKING_OFF),
        ({"paused_until_ms": INDEFINITE_MS + 1, "pause_reason": PauseReason.OPERATOR}, PaceState.PAUSED),
        ({"paused_until_ms": NOW - 1, "pause_reason": PauseReason.BACKOFF}, PaceState.STEADY),  # over
        ({"enabled": False, "paused_until_ms": NOW + 1}, PaceState.DISABLED),
    ],
)
def test_the_state_says_what_holds_the_pace(changes: dict[str, object], state: PaceState) -> None:
    assert pace(**changes).state(NOW) is state


@pytest.mark.parametrize(
    ("changes", "backlog", "seconds"),
    [
        ({}, 600, 60.0),  # a minute's worth at the full rate
        ({"effective_per_minute": 300.0}, 600, 120.0),  # at the pace that applies, not the limit
        ({"paused_until_ms": NOW + 5000, "pause_reason": PauseReason.BACKOFF}, 600, 65.0),  # after the pause
        ({"paused_until_ms": INDEFINITE_MS + 1, "pause_reason": PauseReason.OPERATOR}, 600, None),
        ({"enabled": False}, 600, None),
    ],
)
def test_the_drain_estimate_uses_the_pace_and_pause_that_apply(
    changes: dict[str, object], backlog: int, seconds: float | None
) -> None:
    assert pace(**changes).drain_seconds(backlog, NOW) == seconds


def test_a_flow_hash_is_read_with_the_effective_rate_capped_at_the_ceiling() -> None:
    read = pace_from_flow({"eff_rate": "900", "w_max": "700.5", "cut_ms": "5", "streak_fails": "2",
                           "paused_until": "0", "pause_reason": "nonsense"}, ceiling=600, enabled=True)
    assert (read.effective_per_minute, read.last_failed_per_minute, read.last_cut_ms) == (600.0, 700.5, 5)
    assert read.overloads_since_success == 2 and read.pause_reason is None
    assert (read.accepted_per_minute, read.refused_whatever_the_rate) == (None, 0.0)
    assert pace_from_flow({}, ceiling=60, enabled=True).effective_per_minute == 60.0
    learnt = pace_from_flow({"eff_rate": "294", "est": "300", "s0": "0.3333"}, ceiling=600, enabled=True)
    assert (learnt.accepted_per_minute, learnt.refused_whatever_the_rate) == (300.0, 0.333)
