"""The `hookpump worker` process: arq runs the pump on a cron, the sender delivers; the only arq import.

Each worker process has its own arq queue for its pump cron (arq's unique cron ids are global, so a
shared queue would give each tick to one worker only; here every worker drains, and the claim script
keeps them from sending anything twice). Cron ticks use `unique=False` with a per-worker queue, so
each worker gets exactly one run per tick, and the run lease (scheduler/pump.py) keeps a late tick
from overlapping the current run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any

import backoff
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from core.settings import Settings
from core.store import Store, create_store
from core.store.connection import reconnect_options
from delivery.client import DeliveryClient
from scheduler.cadence import cron_fields
from scheduler.pump import Pump
from scheduler.sender import Sender

log = logging.getLogger(__name__)


async def pump_window(ctx: dict[str, Any]) -> str:
    """The cron job: one pump window. `ctx['score']` is the tick this run was scheduled for."""
    pump: Pump = ctx["pump"]
    report = await pump.run_window(int(ctx["score"]))
    return report.outcome


def pump_queue(settings: Settings) -> str:
    return f"hookpump:pump:{settings.worker_id}"


def redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url is not None
    arq_settings = RedisSettings.from_dsn(settings.redis_url)
    for name, value in reconnect_options().items():
        setattr(arq_settings, name, value)
    arq_settings.conn_retries = 30
    return arq_settings


def create_pump_worker(settings: Settings, pump: Pump) -> Worker:
    interval = settings.pump_interval
    when = cron_fields(interval)
    return Worker(
        functions=[],
        cron_jobs=[cron(pump_window, name="pump_window", unique=False, run_at_startup=True,
                        timeout=interval * 2 + 30, max_tries=1, minute=when.minute, second=when.second)],
        queue_name=pump_queue(settings),
        redis_settings=redis_settings(settings),
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


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set; then stop claiming, finish in-flight requests (bounded), and return."""
    store = await create_store(settings)
    client = DeliveryClient(connect_timeout=settings.connect_timeout, request_timeout=settings.request_timeout,
                            allow_private_targets=settings.allow_private_targets,
                            response_body_limit=settings.response_body_limit)
    sender = Sender(store, client, settings)
    pump = Pump(store, sender, settings)
    sender.start()
    pump.start()
    supervisor = asyncio.create_task(_keep_arq_running(settings, pump), name="hookpump-arq")
    log.info("worker %s started (pump every %.0f s)", settings.worker_id, settings.pump_interval,
             extra={"worker_id": settings.worker_id})
    try:
        await stop.wait()
    finally:
        log.info("worker %s stopping: finishing in-flight deliveries", settings.worker_id)
        pump.stop()
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await sender.drain(grace_seconds=settings.request_timeout + 1)
        await pump.close()
        await _forget_queue(store, settings)
        await client.aclose()
        await store.close()
        log.info("worker %s stopped", settings.worker_id)


async def _keep_arq_running(settings: Settings, pump: Pump) -> None:
    """Run the arq worker; if it dies (Redis gone for longer than its retries), start it again."""
    delays = backoff.expo(base=2, factor=0.5, max_value=10.0)
    next(delays)
    while True:
        worker = create_pump_worker(settings, pump)
        try:
            await worker.main()
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = float(next(delays))
            log.warning("arq worker stopped on an error; starting it again in %.1f s", delay, exc_info=True)
            await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(worker.close())


async def _forget_queue(store: Store, settings: Settings) -> None:
    """This worker's queue dies with it (its id includes the pid); leave no ticks behind."""
    with contextlib.suppress(Exception):
        await store.delete_keys(pump_queue(settings), f"{pump_queue(settings)}:health-check")
