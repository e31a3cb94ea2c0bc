"""What an endpoint's adaptive pace is doing, read from its flow state (pure).

The control loop itself runs inside Redis (core/store/lua/_flow.lua), where every worker shares it;
this names its state for the API, the metrics and the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.models import PauseReason

# Pauses that last until an operator acts have no end time; they are stored this far in the future.
INDEFINITE_MS = 2**52


class PaceState(StrEnum):
    STEADY = "steady"  # at the configured rate: nothing has held it back
    PROBING = "probing"  # below the configured rate after a 429/503: just under what the receiver
    # accepts, probing above it now and then
    BACKING_OFF = "backing_off"  # the receiver takes nothing: the whole endpoint waits out a backoff
    RETRY_AFTER = "retry_after"  # paused until the receiver's Retry-After
    PAUSED = "paused"  # paused by an operator
    DISABLED = "disabled"  # disabled (by an operator, or by a 410)


@dataclass(frozen=True, slots=True)
class Pace:
    """An endpoint's pace as the loop has learnt it."""

    ceiling_per_minute: int  # the configured rate
    effective_per_minute: float  # the pace now
    last_failed_per_minute: float | None  # the pace the receiver last refused
    last_cut_ms: int | None
    overloads_since_success: int
    paused_until_ms: int
    pause_reason: PauseReason | None
    enabled: bool = True
    accepted_per_minute: float | None = None  # what the receiver accepts, as measured; None: no limit seen
    refused_whatever_the_rate: float = 0.0  # the share refused at any pace (not load: the pace ignores it)

    def state(self, now_ms: int) -> PaceState:
        if not self.enabled:
            return PaceState.DISABLED
        if self.paused_until_ms > now_ms:
            if self.pause_reason is PauseReason.RETRY_AFTER:
                return PaceState.RETRY_AFTER
            if self.pause_reason is PauseReason.BACKOFF:
                return PaceState.BACKING_OFF
            return PaceState.PAUSED
        if self.effective_per_minute < self.ceiling_per_minute:
            return PaceState.PROBING
        return PaceState.STEADY

    def drain_seconds(self, backlog: int, now_ms: int) -> float | None:
        """Time to send `backlog` at the pace that applies: after the current pause, at the effective
        rate (the loop grows it only as the receiver proves it can take more). None while the endpoint
        waits for an operator."""
        if not self.enabled or self.paused_until_ms >= INDEFINITE_MS:
            return None
        wait_ms = max(0, self.paused_until_ms - now_ms)
        return round(wait_ms / 1000 + backlog / max(self.effective_per_minute, 1e-9) * 60, 1)


def pace_from_flow(flow: dict[str, str], *, ceiling: int, enabled: bool) -> Pace:
    """Read a pace from the fields of hp:ep:{eid}:flow (see core/keys.py)."""
    reason = flow.get("pause_reason") or None
    return Pace(
        ceiling_per_minute=ceiling,
        effective_per_minute=min(float(ceiling), float(flow.get("eff_rate") or ceiling)),
        last_failed_per_minute=float(flow["w_max"]) if flow.get("w_max") else None,
        last_cut_ms=int(float(flow["cut_ms"])) if flow.get("cut_ms") and flow["cut_ms"] != "0" else None,
        overloads_since_success=int(flow.get("streak_fails") or 0),
        paused_until_ms=int(float(flow.get("paused_until") or 0)),
        pause_reason=PauseReason(reason) if reason and reason in PauseReason._value2member_map_ else None,
        enabled=enabled,
        accepted_per_minute=float(flow["est"]) if flow.get("est") else None,
        refused_whatever_the_rate=round(float(flow.get("s0") or 0), 3),
    )
