"""The arq reference: one arq job per delivery (arq 0.28, `max_jobs=100`, `poll_delay=0.05`), posted with
httpx, signed as hookpump signs, retried by raising `Retry` with exponential backoff.

Not a benchmark on its own. `bench.throughput` and `bench.smoothness` start the worker as
`python -m bench.arq_app REDIS_URL` and enqueue with `enqueue`; `bench.memory` writes the same job
records with `store_jobs` to weigh them.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import httpx
from arq import Retry
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.worker import Worker

from delivery.signing import sign

MAX_JOBS = 100
POLL_DELAY = 0.05


async def startup(ctx: dict[str, Any]) -> None:
    limits = httpx.Limits(max_connections=MAX_JOBS, max_keepalive_connections=MAX_JOBS, keepalive_expiry=30)
    ctx["client"] = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0), limits=limits)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["client"].aclose()


async def deliver(ctx: dict[str, Any], url: str, msg_id: str, payload: str, secret: str) -> None:
    body = payload.encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign([secret], msg_id, timestamp, body),
    }
    try:
        response = await ctx["client"].post(url, content=body, headers=headers)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise Retry(defer=5 * 2 ** ctx["job_try"]) from exc


def create_worker(redis_url: str) -> Worker:
    return Worker(
        functions=[deliver],
        redis_settings=RedisSettings.from_dsn(redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=MAX_JOBS,
        poll_delay=POLL_DELAY,
        handle_signals=True,
    )


async def enqueue(redis_url: str, urls: list[str], total: int, payload: str, secret: str) -> float:
    """Enqueue `total` jobs round-robin over `urls` with 50 concurrent `enqueue_job` calls; returns jobs/s."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    counter = iter(range(total))

    async def lane() -> None:
        for n in counter:
            await pool.enqueue_job("deliver", urls[n % len(urls)], f"msg_{n}", payload, secret)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(lane() for _ in range(50)))
    finally:
        await pool.aclose()
    return total / (time.perf_counter() - started)


async def store_jobs(pool: ArqRedis, url: str, total: int, payload: str, secret: str) -> None:
    """Write `total` queued jobs exactly as `enqueue_job` stores them (a pickled job key with its TTL and
    a queue entry), pipelined, so a million can be weighed in seconds rather than minutes."""
    for start in range(0, total, 1000):
        pipe = pool.pipeline(transaction=False)
        now = int(time.time() * 1000)
        for n in range(start, min(total, start + 1000)):
            job_id = uuid.uuid4().hex
            job = serialize_job("deliver", (url, f"msg_{n}", payload, secret), {}, None, now)
            pipe.psetex(job_key_prefix + job_id, expires_extra_ms, job)
            pipe.zadd(default_queue_name, {job_id: now})
        await pipe.execute()


def main() -> None:
    import uvloop

    uvloop.install()  # the same event loop hookpump's worker runs on
    create_worker(sys.argv[1]).run()


if __name__ == "__main__":
    main()
