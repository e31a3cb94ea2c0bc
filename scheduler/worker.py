"""The `hookpump worker` process: arq runs the pump on a cron, the sender delivers. arq's worker and
cron live here; its Redis and queue names are in scheduler/job_queue.py.

Each worker process has its own arq queue for its pump cron (arq's unique cron ids are global, so a
shared queue would give each tick to one worker only; here every worker drains, and the claim script
keeps them from sending anything twice). Cron ticks use `unique=False` with a per-worker queue, so
each worker gets exactly one run per tick, and the run lease (scheduler/pump.py) keeps a late tick
from overlapping the current run. Should arq's Redis be unreachable, the pump clock
(scheduler/pump_clock.py) runs the windows arq does not start, so delivery never waits on arq.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Any

import backoff
from arq import cron, func
from arq.connections import ArqRedis, create_pool
from arq.worker import Worker

from core.history import HistoryStore, create_history_store, open_history_store
from core.history.log import DeliveryLog
from core.settings import Settings
from core.store import Store, create_store
from core.telemetry import Telemetry
from delivery.client import DeliveryClient
from scheduler.cadence import cron_fields
from scheduler.history_writing import HistoryWriterProcess, InlineHistoryWriter, WriterHandle
from scheduler.instruments import WorkerTelemetry
from scheduler.job_queue import JOBS_QUEUE, forget_pump_queue, pump_queue, redis_settings
from scheduler.jobs import run_bulk_retry, run_retention_sweep
from scheduler.pump import Pump
from scheduler.pump_clock import PumpClock
from scheduler.sender import Sender

log = logging.getLogger(__name__)


async def pump_window(ctx: dict[str, Any]) -> str:
    """The cron job: one pump window. `ctx['score']` is the tick this run was scheduled for."""
    pump: Pump = ctx["pump"]
    report = await pump.run_window(int(ctx["score"]))
    return report.outcome


async def bulk_retry(ctx: dict[str, Any], job_id: str) -> dict[str, int]:
    """A manual retry of every delivery matching a filter (POST /v1/deliveries/retry)."""
    return await run_bulk_retry(ctx["store"], DeliveryLog(ctx["store"], ctx["history"]), job_id)


async def retention_sweep(ctx: dict[str, Any]) -> int:
    return await run_retention_sweep(ctx["store"], ctx["history"], ctx["settings"])


def create_pump_worker(settings: Settings, pump: Pump, pool: ArqRedis) -> Worker:
    interval = settings.pump_interval
    when = cron_fields(interval)
    return Worker(
        functions=[],
        cron_jobs=[
            cron(
                pump_window,
                name="pump_window",
                unique=False,
                run_at_startup=True,
                timeout=interval * 2 + 30,
                max_tries=1,
                minute=when.minute,
                second=when.second,
            )
        ],
        queue_name=pump_queue(settings),
        redis_pool=pool,
        ctx={"pump": pump},
        handle_signals=False,
        # Two runs may coexist for a moment at a handover; nothing else runs on this queue.
        max_jobs=4,
        poll_delay=min(0.1, interval / 10),
        keep_result=0,
        timezone=datetime.UTC,
        health_check_interval=max(1, int(interval)),
        # Ticks missed by a stalled worker expire instead of piling up.
        expires_extra_ms=int(interval * 3000),
    )


def create_jobs_worker(settings: Settings, store: Store, history: HistoryStore, pool: ArqRedis) -> Worker:
    """Jobs any worker may run: bulk retries, and the retention sweep (a unique cron: one run a minute
    across all workers)."""
    return Worker(
        functions=[func(bulk_retry, name="bulk_retry", timeout=3600, max_tries=3)],
        cron_jobs=[
            cron(
                retention_sweep,
                name="retention_sweep",
                second=30,
                unique=True,
                keep_result=600,
                timeout=60,
                max_tries=1,
            )
        ],
        queue_name=JOBS_QUEUE,
        redis_pool=pool,
        ctx={"store": store, "history": history, "settings": settings},
        handle_signals=False,
        max_jobs=4,
        poll_delay=0.5,
        keep_result=3600,
        timezone=datetime.UTC,
    )


async def run_worker(
    settings: Settings, stop: asyncio.Event, telemetry: Telemetry | None = None, *, writer_process: bool = False
) -> None:
    """Run until `stop` is set; then stop claiming, finish in-flight requests (bounded), and return.
    `telemetry` is the process's (its owner shuts it down); None records nothing. The history writer
    runs in a child process with `writer_process` (the commands), else on this event loop."""
    store = await create_store(settings)
    client = DeliveryClient(
        connect_timeout=settings.connect_timeout,
        request_timeout=settings.request_timeout,
        allow_private_targets=settings.allow_private_targets,
        response_body_limit=settings.response_body_limit,
        max_connections=max(1000, settings.worker_concurrency),
    )
    instruments = WorkerTelemetry(telemetry or Telemetry.disabled(settings))
    sender = Sender(store, client, settings, instruments)
    pump = Pump(store, sender, settings, instruments)
    instruments.watch_outstanding(lambda: sender.outstanding)
    history = create_history_store(settings)
    await open_history_store(history, settings)
    writer: WriterHandle = (
        HistoryWriterProcess(settings) if writer_process else InlineHistoryWriter(store, history, settings)
    )
    sender.start()
    pump.start()
    clock = PumpClock(pump, settings.pump_interval)
    clock.start()
    runners = [
        ArqRunner(lambda pool: create_pump_worker(settings, pump, pool), settings, "hookpump-arq-pump"),
        ArqRunner(lambda pool: create_jobs_worker(settings, store, history, pool), settings, "hookpump-arq-jobs"),
    ]
    log.info(
        "worker %s started (pump every %.0f s)",
        settings.worker_id,
        settings.pump_interval,
        extra={"worker_id": settings.worker_id},
    )
    try:
        await stop.wait()
    finally:
        log.info("worker %s stopping: finishing in-flight deliveries", settings.worker_id)
        pump.stop()
        await clock.stop()
        # The current window's run returns at once; a bulk retry gets a little longer to finish its page.
        await asyncio.gather(*(runner.stop(grace_seconds=3.0) for runner in runners))
        await sender.drain(grace_seconds=settings.request_timeout + 1)
        await pump.close()
        await writer.stop()
        await history.close()
        await forget_pump_queue(settings)
        await client.aclose()
        await store.close()
        log.info("worker %s stopped", settings.worker_id)


class ArqRunner:
    """Keeps one arq worker running, restarting it if it dies (Redis gone past its retries), and
    stops it gracefully: no new jobs, running ones finish (bounded), then close.

    We own the arq connection pool: arq's `Worker.close()` gathers job tasks it has just cancelled,
    so it can raise CancelledError before closing its pool, and a job finishing after that would
    reconnect on a closed pool.
    """

    def __init__(self, create: Callable[[ArqRedis], Worker], settings: Settings, name: str) -> None:
        self._create = create
        self._settings = settings
        self._worker: Worker | None = None
        self._task = asyncio.create_task(self._run(), name=name)

    async def _run(self) -> None:
        delays = backoff.expo(base=2, factor=0.5, max_value=10.0)
        next(delays)
        while True:
            pool: ArqRedis | None = None
            try:
                pool = await create_pool(redis_settings(self._settings))
                self._worker = self._create(pool)
                await self._worker.main()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = float(next(delays))
                log.warning("arq worker stopped on an error; starting it again in %.1f s", delay, exc_info=True)
                await asyncio.sleep(delay)
            finally:
                worker, self._worker = self._worker, None
                if worker is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.shield(worker.close())
                if pool is not None:
                    with contextlib.suppress(Exception):
                        await pool.aclose(close_connection_pool=True)

    async def stop(self, grace_seconds: float) -> None:
        worker = self._worker
        if worker is not None:
            worker.allow_pick_jobs = False
            deadline = asyncio.get_running_loop().time() + grace_seconds
            while any(not t.done() for t in worker.tasks.values()):
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.02)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

