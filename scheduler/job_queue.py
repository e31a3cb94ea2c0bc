"""arq's door outside the worker: arq's Redis (HOOKPUMP_ARQ_REDIS_URL, else the one Redis of
HOOKPUMP_REDIS_URL), the queue names, and how the API hands a bulk retry to the workers.

It loads arq's connection module only, not the worker (nor aiohttp, which the sender needs), so the
API imports this and nothing of scheduler/worker.py.
"""

from __future__ import annotations

import contextlib

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from core.errors import JobQueueUnavailable
from core.settings import Settings
from core.store.connection import reconnect_options

# The workers' shared queue: bulk retries and the retention sweep.
JOBS_QUEUE = "hookpump:jobs"
# The API asks arq's Redis at most this long: a bulk retry refused now is retried by its caller, and
# arq's Redis being away never holds a request or a probe.
QUICK_RETRIES = 2
CONNECT_TIMEOUT_SECONDS = 2.0


def pump_queue(settings: Settings) -> str:
    """One worker's own queue for its pump cron (scheduler/worker.py says why)."""
    return f"hookpump:pump:{settings.worker_id}"


def job_queue_url(settings: Settings) -> str:
    url = settings.job_queue_url
    if url is None:
        raise ValueError("arq's Redis needs HOOKPUMP_ARQ_REDIS_URL or HOOKPUMP_REDIS_URL")
    return url


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's RedisSettings for the worker, which retries across a restart of arq's Redis."""
    arq_settings = RedisSettings.from_dsn(job_queue_url(settings))
    for name, value in reconnect_options().items():
        setattr(arq_settings, name, value)
    arq_settings.conn_retries = 30
    return arq_settings


def quick_client(settings: Settings) -> ArqRedis:
    """A client of arq's Redis that connects on first use and gives up within a second or two."""
    pool = ConnectionPool.from_url(
        job_queue_url(settings), decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        **reconnect_options(QUICK_RETRIES),
    )
    return ArqRedis(pool, default_queue_name=JOBS_QUEUE)


class JobQueue:
    """How the API hands work to the workers' shared arq queue. Opening it asks nothing of arq's
    Redis, so the API starts (and serves everything else) while that Redis is away."""

    def __init__(self, settings: Settings) -> None:
        self._pool = quick_client(settings)

    @classmethod
    async def connect(cls, settings: Settings) -> JobQueue:
        return cls(settings)

    async def enqueue_bulk_retry(self, job_id: str) -> None:
        try:
            await self._pool.enqueue_job("bulk_retry", job_id, _job_id=f"bulk_retry:{job_id}",
                                         _queue_name=JOBS_QUEUE)
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailable(f"arq's Redis (HOOKPUMP_ARQ_REDIS_URL) is unreachable: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._pool.ping()
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailable(f"arq's Redis (HOOKPUMP_ARQ_REDIS_URL) is unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._pool.aclose(close_connection_pool=True)


async def forget_pump_queue(settings: Settings) -> None:
    """A worker's pump queue dies with it (its id includes the pid); leave no ticks behind. Best
    effort: if arq's Redis is away the keys stay until their ticks expire."""
    client = quick_client(settings)
    try:
        with contextlib.suppress(RedisError, OSError):
            await client.delete(pump_queue(settings), f"{pump_queue(settings)}:health-check")
    finally:
        await client.aclose(close_connection_pool=True)
