"""Unauthenticated routes: the liveness and readiness probes and the API contract (openapi.yaml)."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import HistoryError, JobQueueUnavailable, StoreUnavailable
from service.context import Context, context
from service.problems import problem_response

# In a wheel the contract is packaged beside this module; in a checkout it is at the repository root.
CONTRACT_PLACES = (
    Path(__file__).resolve().parent / "openapi.yaml",
    Path(__file__).resolve().parent.parent / "openapi.yaml",
)


logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2.0
# The history writers normally keep the outbox under a second old; past this the log visibly lags.
OUTBOX_LAG_DEGRADED_SECONDS = 60.0


async def healthz(request: Request) -> Response:
    """Liveness only: the process answers. It does not ask Redis, so a Redis outage does not get
    every API process restarted; requests answer 503 meanwhile."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: Redis answers and some worker's pump ran within two pump intervals (else messages would
    be accepted and not delivered). A 503 problem says which check failed."""
    ctx = context(request)
    try:
        # The store retries for ~30 s across a Redis restart; a probe wants its answer sooner.
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            last_run_ms = await ctx.store.pump.last_run_ms()
    except (StoreUnavailable, TimeoutError) as exc:
        # The probe answers without a key: it names the part, the log carries the error (which can hold
        # an address).
        logger.warning("readyz: Redis does not answer: %s", exc or f"no answer within {PROBE_TIMEOUT_SECONDS:g} s")
        return not_ready("Redis is unreachable; check HOOKPUMP_REDIS_URL and that Redis is up (the log says why).")
    limit = 2 * ctx.settings.pump_interval
    if last_run_ms is None:
        return not_ready("No pump has ever run: start a `hookpump worker` on this Redis.")
    age = max(0.0, time.time() - last_run_ms / 1000)
    if age > limit:
        return not_ready(f"The pump last ran {age:.0f} s ago, more than two pump intervals ({limit:g} s): "
                         "are the workers running and reaching Redis?")
    return JSONResponse({"status": "ready", "pump_last_run_age_seconds": round(age, 3),
                         "history": await history_health(ctx), "job_queue": await job_queue_health(ctx)})


async def job_queue_health(ctx: Context) -> dict[str, Any]:
    """arq's Redis (bulk retries, the pump's cron). Never makes the service unready: the workers run
    the pump on their own clock without it; only bulk retries wait for it."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await ctx.jobs.ping()
    except (JobQueueUnavailable, TimeoutError) as exc:
        return {"status": "degraded",
                "detail": f"the job queue does not answer ({exc or 'timeout'}); bulk retries wait for it, "
                          "and workers run the pump on their own clock"}
    return {"status": "ok", "detail": None}


async def history_health(ctx: Context) -> dict[str, Any]:
    """The history store's state. Never makes the service unready: delivery does not depend on it
    (the outbox keeps every record until the database takes it), so it is reported as degraded."""
    problems = []
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await ctx.history.ping()
    except (HistoryError, TimeoutError) as exc:
        logger.warning("readyz: the history store does not answer: %s", exc or "timeout")
        problems.append("the history store does not answer (the log says why)")
    length, oldest = None, None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            backlog = await ctx.store.outbox.backlog()
        length, oldest = backlog.length, backlog.oldest_age_seconds
    except (StoreUnavailable, TimeoutError):
        pass
    if oldest is not None and oldest > OUTBOX_LAG_DEGRADED_SECONDS:
        problems.append(f"the oldest history record has waited {oldest:.0f} s to be written; the delivery log lags")
    return {"status": "degraded" if problems else "ok", "detail": "; ".join(problems) or None,
            "outbox_length": length, "outbox_oldest_age_seconds": oldest}


def not_ready(detail: str) -> Response:
    return problem_response(503, detail, slug="not-ready", title="Not ready")


async def openapi(request: Request) -> Response:
    return Response(contract(), media_type="application/yaml")


@cache
def contract() -> bytes:
    for place in CONTRACT_PLACES:
        if place.is_file():
            return place.read_bytes()
    raise FileNotFoundError(f"openapi.yaml is in none of {', '.join(str(p) for p in CONTRACT_PLACES)}")
