"""The Celery reference: what a Python team would otherwise build, one task per webhook, posted with
httpx, retried by Celery's `autoretry_for` / `retry_backoff`, signed as hookpump signs.

Not a benchmark on its own: `bench.throughput` starts the worker as
`celery -A bench.celery_app worker --pool threads --concurrency N --loglevel warning` with
BENCH_CELERY_BROKER pointing at a private redis-server, enqueues with `enqueue`, and times the drain.
"""

from __future__ import annotations

import os
import time

import httpx
from celery import Celery  # type: ignore[import-untyped]  # celery ships no type hints

from delivery.signing import sign

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/15")
# One pooled client per worker process, shared by its threads (httpx.Client is thread-safe); sized to
# the worker's concurrency so no thread waits for a connection.
POOL = int(os.environ.get("BENCH_CELERY_POOL", "128"))

app = Celery("hookpump_bench", broker=BROKER)
app.conf.update(
    task_ignore_result=True,  # webhooks need no result backend
    task_acks_late=True,  # a crashed worker's task is redelivered: the at-least-once a webhook needs
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_client = httpx.Client(
    timeout=httpx.Timeout(15.0, connect=5.0),
    limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL, keepalive_expiry=30),
)


@app.task(  # type: ignore[untyped-decorator]
    name="deliver",
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=5,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=20,
)
def deliver(url: str, msg_id: str, payload: str, secret: str) -> None:
    body = payload.encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign([secret], msg_id, timestamp, body),
    }
    response = _client.post(url, content=body, headers=headers)
    response.raise_for_status()  # HTTPStatusError is an HTTPError: Celery retries it with backoff


def enqueue(urls: list[str], total: int, payload: str, secret: str) -> None:
    """Publish `total` tasks, one per delivery, round-robin over `urls`."""
    with app.producer_or_acquire() as producer:
        for n in range(total):
            deliver.apply_async((urls[n % len(urls)], f"msg_{n}", payload, secret), producer=producer)
