"""Monitoring (read scope): one endpoint's statistics, flow and send timeline, and the whole queue at
a glance. The console reads through the same functions (endpoint_stats_json, queue_overview_json,
timeline_json).

The store answers in milliseconds since the epoch; the wire uses RFC 3339 times and seconds.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.clock import now_ms
from core.errors import InvalidInput
from core.models import iso
from service import validation
from service.auth import READING
from service.context import Context, context

RECENT_ACTIONS = 20
TIMELINE_DEFAULT_SECONDS = 300
TIMELINE_MAX_SECONDS = 900
PAUSE_REASONS = frozenset({"retry_after", "backoff", "congestion", "operator"})


async def endpoint_stats(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    return JSONResponse(await endpoint_stats_json(ctx, _endpoint_id(request)))


async def queue_overview(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    return JSONResponse(await queue_overview_json(ctx))


async def endpoint_timeline(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    eid = _endpoint_id(request)
    validation.query_names(request.query_params, ("seconds",))
    seconds = timeline_seconds(validation.single(request.query_params, "seconds"))
    return JSONResponse(await timeline_json(ctx, eid, seconds))


async def endpoint_stats_json(ctx: Context, eid: str) -> dict[str, Any]:
    raw = await ctx.store.monitoring.endpoint_stats(eid)
    actions = await ctx.store.monitoring.endpoint_actions(eid)  # newest first
    return {
        "endpoint_id": raw["endpoint_id"],
        "backlog": raw["backlog"],
        "due_now": raw["due_now"],
        "in_flight": raw["in_flight"],
        "counts": raw["counts"],
        "last_minute": raw["last_minute"],
        "last_hour": raw["last_hour"],
        "success_ratio": raw["success_ratio"],
        "rate_limit_per_minute": raw["rate_limit_per_minute"],
        "effective_rate_per_minute": raw["effective_rate_per_minute"],
        "paused": raw["paused"],
        "paused_until": _time(raw["paused_until_ms"]),
        "pause_reason": raw["pause_reason"],
        "oldest_pending_at": _time(raw["oldest_pending_ms"]),
        "oldest_pending_age_seconds": raw["oldest_pending_age_seconds"],
        "estimated_drain_seconds": raw["estimated_drain_seconds"],
        "pacing": {
            **{k: v for k, v in raw["pacing"].items() if k != "last_cut_ms"},
            "last_cut_at": _time(raw["pacing"]["last_cut_ms"]),
        },
        "recent_actions": actions[:RECENT_ACTIONS],
    }


async def queue_overview_json(ctx: Context) -> dict[str, Any]:
    raw = await ctx.store.monitoring.queue_overview(pump_interval=ctx.settings.pump_interval)
    pump = raw["pump"]
    return {
        "counts": raw["counts"],
        "backlog": raw["backlog"],
        "endpoints_ready": raw["endpoints_ready"],
        "oldest_pending_at": _time(raw["oldest_pending_ms"]),
        "oldest_pending_age_seconds": raw["oldest_pending_age_seconds"],
        "largest_backlogs": raw["largest_backlogs"],
        "pump": {
            "last_run_at": _time(pump["last_run_ms"]),
            "seconds_since_last_run": pump["seconds_since_last_run"],
            "lag_seconds": pump["lag_ms"] / 1000 if pump["lag_ms"] is not None else None,
            "interval_seconds": pump["interval_seconds"],
            "late": pump["late"],
        },
        "workers": [{"id": w["id"], "last_heartbeat_at": iso(w["last_heartbeat_ms"])} for w in raw["workers"]],
    }


def timeline_seconds(raw: str | None) -> int:
    if raw is None:
        return TIMELINE_DEFAULT_SECONDS
    if not raw.isascii() or not raw.isdigit():
        raise InvalidInput("seconds", f"must be a whole number from 1 to {TIMELINE_MAX_SECONDS}")
    return validation.integer(int(raw), "seconds", 1, TIMELINE_MAX_SECONDS)


def limit_per_second(rate_limit_per_minute: int) -> int:
    """The most requests the pacing promise allows in any 1-second window (ARCHITECTURE.md, the pump)."""
    return math.ceil(rate_limit_per_minute / 60) + 1


async def timeline_json(ctx: Context, eid: str, seconds: int) -> dict[str, Any]:
    """Requests sent per second over the last `seconds` (the current second last, still filling), the
    limit line, and the pauses that overlap the window, oldest first."""
    endpoint = await ctx.store.endpoints.get(eid)  # 404 for an unknown or deleted endpoint
    last = now_ms() // 1000
    first = last - seconds + 1
    sent = await ctx.store.timeline.sends_per_second(eid, first, last)
    window_start, window_end = first * 1000, (last + 1) * 1000
    pauses = []
    for event in reversed(await ctx.store.timeline.pauses(eid)):
        start, end = event.get("start_ms"), event.get("end_ms")
        if not isinstance(start, int) or not isinstance(end, int) or end < window_start or start >= window_end:
            continue
        code = event.get("status_code")
        pauses.append({
            "start": iso(start),
            "end": iso(end),
            "reason": event.get("reason") if event.get("reason") in PAUSE_REASONS else None,
            "status_code": code if isinstance(code, int) else None,
        })
    return {
        "endpoint_id": eid,
        "seconds": seconds,
        "start": iso(window_start),
        "end": iso(window_end),
        "rate_limit_per_minute": endpoint.rate_limit_per_minute,
        "limit_per_second": limit_per_second(endpoint.rate_limit_per_minute),
        "points": [{"at": iso((first + i) * 1000), "sent": n} for i, n in enumerate(sent)],
        "pauses": pauses,
    }


def _endpoint_id(request: Request) -> str:
    return validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")


def _time(ms: Any) -> str | None:
    return iso(int(ms)) if ms is not None else None
