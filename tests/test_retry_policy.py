"""Retry delays and overload pauses stay within their bounds, over many seeds."""

from __future__ import annotations

import random

import pytest

from delivery.retry_policy import overload_pause, retry_allowed, retry_delay

SEEDS = range(300)


@pytest.mark.parametrize(
    ("attempt", "planned"),
    [
        (1, 5.0),
        (2, 10.0),
        (3, 20.0),
        (4, 40.0),
        (10, 2560.0),
        (13, 20480.0),
        (14, 36000.0),
        (50, 36000.0),
        (10_000, 36000.0),
        (0, 5.0),
        (-3, 5.0),
    ],
)
def test_retry_delay_is_equal_jitter_of_the_doubling_schedule(attempt: int, planned: float) -> None:
    delays = [retry_delay(attempt, base=5.0, cap=36000.0, rng=random.Random(seed)) for seed in SEEDS]
    assert all(planned / 2 <= delay <= planned for delay in delays)
    # jittered, and spread over the whole half-interval rather than bunched at one end
    assert min(delays) < planned * 0.55 and max(delays) > planned * 0.95


def test_retry_delay_without_rng_uses_backoff_jitter() -> None:
    assert all(2.5 <= retry_delay(1, base=5.0, cap=100.0) <= 5.0 for _ in range(200))


def test_retry_delay_with_a_huge_cap_does_not_overflow() -> None:
    assert retry_delay(5000, base=5.0, cap=1e308, rng=random.Random(1)) > 0


@pytest.mark.parametrize(
    ("first_ms", "now_ms", "horizon_s", "allowed"),
    [
        (0, 0, 10.0, True),
        (0, 9_999, 10.0, True),
        (0, 10_000, 10.0, False),
        (1_000, 500_000, 3 * 24 * 3600.0, True),
        (0, 3 * 24 * 3600 * 1000 + 1, 3 * 24 * 3600.0, False),
    ],
)
def test_retry_allowed_within_horizon(first_ms: int, now_ms: int, horizon_s: float, allowed: bool) -> None:
    assert retry_allowed(first_ms, now_ms, horizon_s) is allowed


@pytest.mark.parametrize("retry_after", [0.0, 0.3, 1.0, 5.0, 30.0, 120.0, 86400.0])
@pytest.mark.parametrize("level", [0, 3, 40])
def test_overload_pause_never_shortens_retry_after(retry_after: float, level: int) -> None:
    pauses = [overload_pause(level, retry_after, base=5.0, cap=3600.0, rng=random.Random(seed)) for seed in SEEDS]
    extra = min(retry_after * 0.1, 1.0)
    assert all(retry_after <= pause <= retry_after + extra for pause in pauses)


def test_overload_pause_with_retry_after_ignores_the_backoff_cap() -> None:
    assert overload_pause(0, 7200.0, base=5.0, cap=60.0, rng=random.Random(1)) >= 7200.0


@pytest.mark.parametrize(
    ("level", "ceiling"), [(0, 5.0), (1, 10.0), (2, 20.0), (6, 320.0), (10, 3600.0), (200, 3600.0)]
)
def test_overload_pause_without_retry_after_is_floored_full_jitter(level: int, ceiling: float) -> None:
    pauses = [overload_pause(level, None, base=5.0, cap=3600.0, rng=random.Random(seed)) for seed in SEEDS]
    assert all(2.5 <= pause <= ceiling for pause in pauses)  # never ~0: at least half the base
    assert max(pauses) > ceiling * 0.9
    assert min(pauses) < 2.5 + (ceiling - 2.5) * 0.1


def test_overload_pause_with_cap_below_base_stays_within_cap() -> None:
    pauses = [overload_pause(3, None, base=5.0, cap=1.0, rng=random.Random(seed)) for seed in SEEDS]
    assert all(0.5 <= pause <= 1.0 for pause in pauses)
