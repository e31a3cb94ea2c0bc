"""The console's text for people (pure): times in 24-hour UTC, lengths of time, and the API's codes
(pause reasons, pace states) as plain sentences. Nothing here reads a store or knows HTML."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

# Why an endpoint is paused or disabled, for each reason the API reports (stats, flow, timeline).
PAUSE_WHY = {
    "retry_after": "the receiver asked to wait (Retry-After)",
    "backoff": "the receiver refused every request (429 or 503 without Retry-After), so sending backs off",
    "congestion": "the receiver was congested (429 or 503), so the pace slowed",
    "operator": "an operator paused it",
    "gone": "the receiver answered 410 Gone, so the endpoint was disabled",
    "disabled": "an operator disabled it",
}
DISABLING = frozenset({"gone", "disabled"})
# What the pace is doing, for each state of core.pacing.PaceState.
PACE_STATES = {
    "steady": "steady at its limit",
    "probing": "probing",
    "backing_off": "backing off",
    "retry_after": "waiting as the receiver asked (Retry-After)",
    "paused": "paused",
    "disabled": "disabled",
}


def _parse(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def absolute(moment: str | None) -> str:
    """'2026-11-30 13:27:04 UTC' for an RFC 3339 time from the API."""
    if not moment:
        return ""
    return moment[:10] + " " + moment[11:19] + " UTC"


def utc_time(moment: str | None, now: float | None = None) -> str:
    """'13:27:04 UTC' for a time today (UTC), else '2026-11-30 13:27:04 UTC'."""
    if not moment:
        return ""
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
    return moment[11:19] + " UTC" if moment[:10] == today else absolute(moment)


def span(seconds: float) -> str:
    """'3 min 4 s': a length of time to two units at most (Action Scheduler's style)."""
    seconds = abs(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            amount = int(seconds // size)
            seconds -= amount * size
            parts.append(f"{amount} {unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def relative(moment: str | None, now: float | None = None) -> str:
    """'3 min ago' / 'in 12 s' for an RFC 3339 time from the API."""
    if not moment:
        return ""
    delta = _parse(moment) - (time.time() if now is None else now)
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def sentence(text: str) -> str:
    """The text with its first letter in capitals (Jinja's `capitalize` lowers all the others)."""
    return text[:1].upper() + text[1:]


def why_paused(reason: str | None) -> str:
    return PAUSE_WHY.get(reason or "", "the reason was not recorded")


def pause_text(reason: str | None, until: str | None, now: float | None = None) -> str:
    """'paused until 12:00:31 UTC (in 25 s): the receiver asked to wait (Retry-After)'; 'paused until
    resumed: an operator paused it'; 'disabled: the receiver answered 410 Gone, ...'."""
    if reason in DISABLING:
        return f"disabled: {why_paused(reason)}"
    if until is None:
        return f"paused until resumed: {why_paused(reason)}"
    return f"paused until {utc_time(until, now)} ({relative(until, now)}): {why_paused(reason)}"


def endpoint_state(stats: Mapping[str, Any], now: float | None = None) -> str:
    """An endpoint's state from its stats (GET /v1/endpoints/{id}/stats): 'enabled', or why it waits."""
    if not stats["paused"]:
        return "enabled"
    return pause_text(stats["pause_reason"], stats["paused_until"], now)


def pace_state(state: str) -> str:
    return PACE_STATES.get(state, state.replace("_", " "))


def pace_text(pacing: Mapping[str, Any], now: float | None = None) -> str:
    """The stats' `pacing` object as one line, leaving out what the pace has not learnt (None)."""
    facts = []
    if pacing.get("last_failed_rate_per_minute") is not None:
        facts.append(f"refused at {pacing['last_failed_rate_per_minute']:.1f}/min")
    if pacing.get("accepted_rate_per_minute") is not None:
        facts.append(f"accepts about {pacing['accepted_rate_per_minute']:.1f}/min")
    if pacing.get("last_cut_at"):
        facts.append(f"last slowed at {utc_time(pacing['last_cut_at'], now)}")
    if pacing.get("refused_whatever_the_rate"):
        facts.append(f"{round(pacing['refused_whatever_the_rate'] * 100)}% refused whatever the rate")
    refusals = pacing.get("overloads_since_success") or 0
    if refusals:
        facts.append(f"{refusals} refusal{'s' if refusals != 1 else ''} since the last success")
    text = pace_state(pacing["state"])
    return f"{text} ({'; '.join(facts)})" if facts else text


def drain_text(stats: Mapping[str, Any], now: float | None = None) -> str:
    """How long the queue takes to send, honestly: an estimate at the current pace starts when a pause
    ends, and a receiver that has refused everything lately may not take it at that pace either."""
    backlog = stats["backlog"]
    if not backlog:
        return "nothing queued"
    if stats["pause_reason"] in DISABLING:
        return "never while the endpoint is disabled"
    estimate = stats["estimated_drain_seconds"]
    if estimate is None or (stats["paused"] and stats["paused_until"] is None):
        return "not until an operator resumes it"
    rate = f"at {stats['effective_rate_per_minute']:.1f}/min"
    refusals = stats["pacing"].get("overloads_since_success") or 0
    caveat = f", if the receiver takes them (it refused the last {refusals})" if refusals else ""
    until = stats["paused_until"] if stats["paused"] else None
    if until is None:
        return f"about {span(estimate)} {rate}{caveat}"
    # The store's estimate counts the wait; what follows it is sending time.
    sending = max(0.0, estimate - max(0.0, _parse(until) - (time.time() if now is None else now)))
    return f"resumes at {utc_time(until, now)}; the estimate starts then: about {span(sending)} {rate}{caveat}"


def flow_text(stats: Mapping[str, Any], now: float | None = None) -> str:
    """The endpoint page's banner: why it waits, or whether it is sending or idle, and at what pace."""
    if stats["paused"]:
        return sentence(endpoint_state(stats, now)) + "."
    pace = f"{stats['effective_rate_per_minute']:.1f} of {stats['rate_limit_per_minute']} requests per minute"
    if not stats["backlog"] and not stats["in_flight"]:
        return f"Idle: nothing is queued. The next deliveries go out at up to {pace}"
    return f"Sending at {pace}"


def next_attempt_text(delivery: Mapping[str, Any], endpoint: Mapping[str, Any] | None,
                      now: float | None = None) -> str | None:
    """What a queued delivery waits for, when its time alone would mislead: its endpoint's pause (and
    until when), its endpoint being disabled, or its turn at the pace once due. None: its time says it.
    `endpoint` is the endpoint with its flow (service.operations.endpoint_with_flow)."""
    if delivery["status"] not in ("pending", "retrying") or endpoint is None:
        return None
    flow = endpoint["flow"]
    if not endpoint["enabled"]:
        return "held: the endpoint is disabled" + (" (the receiver answered 410 Gone)"
                                                   if endpoint.get("disabled_reason") == "gone" else "")
    due = delivery["next_attempt_at"]
    if flow["paused"] and flow["paused_until"] is None:
        return f"waits for an operator to resume the endpoint ({why_paused(flow['pause_reason'])})"
    if flow["paused"] and (due is None or _parse(due) <= _parse(flow["paused_until"])):
        return (f"waits for the endpoint's pause to end at {utc_time(flow['paused_until'], now)} "
                f"({relative(flow['paused_until'], now)}): {why_paused(flow['pause_reason'])}")
    if due is not None and _parse(due) <= (time.time() if now is None else now):
        return f"due since {utc_time(due, now)}; it goes out in its turn at the endpoint's pace"
    return None
