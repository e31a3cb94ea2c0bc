"""Monitoring (read scope): one endpoint's statistics and flow, and the whole queue at a glance.

The store answers in milliseconds since the epoch; the wire uses RFC 3339 times and seconds.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.models import iso
from service import validation
from service.auth import READING
from service.context import context

RECENT_ACTIONS = 20


async def endpoint_stats(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    eid = validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
    raw = await ctx.store.monitoring.endpoint_stats(eid)
    actions = await ctx.store.monitoring.endpoint_actions(eid)  # newest first
    return JSONResponse({
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
    })


async def queue_overview(request: Request) -> Response:
    ctx = context(request)
    await ctx.auth.require(request, READING)
    raw = await ctx.store.monitoring.queue_overview(pump_interval=ctx.settings.pump_interval)
    pump = raw["pump"]
    return JSONResponse({
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
    })


def _time(ms: Any) -> str | None:
    return iso(int(ms)) if ms is not None else None
