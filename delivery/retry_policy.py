"""How long to wait: per-delivery retries (exponential, equal jitter, within a horizon) and
whole-endpoint overload pauses (Retry-After honoured, never shortened). Pure."""

from __future__ import annotations

import itertools
import random

import backoff

# Past this many doublings every schedule has long reached its cap; stopping here also keeps
# base * 2**n from overflowing a float when the cap is enormous.
_MAX_DOUBLINGS = 64


def _exponential(step: int, *, base: float, cap: float) -> float:
    """Element `step` (0-based) of backoff.expo(factor=base, max_value=cap): base * 2**step, at most cap."""
    waits = backoff.expo(factor=base, max_value=cap)
    next(waits)  # backoff's generators start with a bare yield, primed by .send(None)
    return float(next(itertools.islice(waits, min(max(step, 0), _MAX_DOUBLINGS), None)))


def _full_jitter(value: float, rng: random.Random | None) -> float:
    """Uniform in [0, value]; backoff.full_jitter unless a seeded rng is given (tests, reproducibility)."""
    return float(backoff.full_jitter(value)) if rng is None else rng.uniform(0.0, value)


def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempt` failed tries (1 for the first failure): the schedule
    base, 2*base, 4*base ... cap, with equal jitter (uniform in [delay/2, delay]) so that deliveries
    failed together do not all come back together, while none comes back much earlier than planned."""
    delay = _exponential(attempt - 1, base=base, cap=cap)
    return delay / 2 + _full_jitter(delay / 2, rng)


def retry_allowed(first_attempt_ms: int, now_ms: int, horizon_s: float) -> bool:
    """Whether a delivery first tried at `first_attempt_ms` may still be tried at `now_ms` (pass the
    planned time of the next try to stop before the horizon rather than at it)."""
    return now_ms - first_attempt_ms < horizon_s * 1000


def overload_pause(
    backoff_level: int,
    retry_after: float | None,
    *,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to pause a whole endpoint after a 429/503.

    With Retry-After: exactly that plus a jitter that only lengthens it (at most +10 % or +1 s), since
    re-sending before the receiver's time is what its operators complain about. Without: full jitter
    over [floor, min(cap, base * 2**backoff_level)], where `backoff_level` counts consecutive overload
    answers (0 for the first). The floor (half of base, or of cap if smaller) exists because plain full
    jitter can draw ~0, which would re-send straight into the overload.
    """
    if retry_after is not None:
        return retry_after + _full_jitter(min(retry_after * 0.1, 1.0), rng)
    ceiling = _exponential(backoff_level, base=base, cap=cap)
    floor = min(base, cap) / 2
    return floor + _full_jitter(max(ceiling - floor, 0.0), rng)
