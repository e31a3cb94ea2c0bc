"""Delivery throughput: a real `hookpump worker` draining a backlog across 100 endpoints whose limits
are not binding, to a local receiver, with attempt records written; beside it, in the same run, a plain
aiohttp client sending the same requests to the same receiver at the same concurrency (the machine's
ceiling for this workload) and, with --alternatives, the same deliveries through a Celery worker (one
task per webhook, httpx) and an arq worker (one job per delivery, httpx).

    python -m bench.throughput --deliveries 40000 --concurrency 128 [--alternatives]

Everything runs on loopback: a private redis-server per system (append-only, fsync every second), a
uvicorn receiver, the worker and the reference client, each its own process, sharing this machine's
cores. Every system is timed the same way: the steady rate between 10% and 90% of the backlog done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import arq_app
from bench.processes import (
    PYTHON,
    Result,
    Row,
    cpu_seconds,
    free_port,
    hookpump_env,
    machine_facts,
    ratio,
    run_async,
    start_hookpump,
    start_receiver,
    start_redis,
    stop,
    tree_cpu_seconds,
)
from core import keys
from core.settings import Settings
from core.store import NewMessage, create_store
from core.store.connection import typed
from delivery.signing import generate_secret

ENDPOINTS = 100  # --endpoints changes it (main); 1 shows one fast endpoint against its own rate, 1,000/s
PAYLOAD = json.dumps({"type": "order.paid", "id": "ord_0123456789", "amount": 4200, "items": ["x" * 40] * 10})


@dataclass(frozen=True, slots=True)
class Drain:
    rate: float  # deliveries/s between 10% and 90% done
    seconds: float  # from the worker's start to the last delivery (or the timeout)
    done: int
    cpu_per_1000: dict[str, float]  # CPU seconds per 1,000 deliveries, by process
    # hookpump only: ages (ms) of the oldest history-outbox record appended since the worker started,
    # sampled as the drain is watched (an upper bound of any attempt's attempt-to-visible delay then),
    # each with whether the records of the backlog's ingest (before the worker started) were all committed.
    outbox_lag_ms: list[tuple[bool, float]] = field(default_factory=list)


async def load_backlog(redis_url: str, receiver_port: int, deliveries: int, max_in_flight: int) -> None:
    settings = Settings(redis_url=redis_url)
    store = await create_store(settings)
    fields: dict[str, Any] = {
        "rate_limit_per_minute": 60000,
        "max_in_flight": max_in_flight,
        "event_types": None,
        "headers": {},
        "description": "bench",
        "enabled": True,
        "trace_propagation": True,
    }
    for i in range(ENDPOINTS):
        await store.endpoints.create({**fields, "url": f"http://127.0.0.1:{receiver_port}/e{i}"}, generate_secret())
    # Fan-out: each message goes to every endpoint.
    messages = deliveries // ENDPOINTS
    for start in range(0, messages, 100):
        await store.messages.ingest([NewMessage("order.paid", PAYLOAD, None)] * min(100, messages - start))
    await store.close()


async def watch(done: Callable[[], Awaitable[int]], total: int, timeout: float) -> tuple[float, float, int]:
    """Poll `done()` every 0.25 s until `total` or `timeout`: (rate 10%..90%, seconds, last count)."""
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        count = await done()
        samples.append((time.monotonic(), count))
        if count >= total:
            break
        await asyncio.sleep(0.25)
    last_t, last = samples[-1]
    low = next(((t, d) for t, d in samples if d >= total * 0.1), samples[0])
    high = next(((t, d) for t, d in samples if d >= total * 0.9), (last_t, last))
    rate = (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else 0.0
    return rate, last_t - started, last


async def hookpump_done(
    redis_url: str, total: int, timeout: float, outbox_lag_ms: list[tuple[bool, float]]
) -> tuple[float, float, int]:
    store = await create_store(Settings(redis_url=redis_url))
    started_ms = int(time.time() * 1000)

    async def succeeded() -> int:
        # Committed outbox entries are deleted, so the first one since the start still there is the
        # oldest record of the drain not yet visible in the history.
        pipe = store.redis.pipeline(transaction=False)
        for stream in keys.OUTBOX_STREAMS:
            pipe.xrange(stream, f"{started_ms}-0", "+", count=1)
            pipe.xrange(stream, "-", f"{started_ms - 1}", count=1)
        replies = await pipe.execute()
        now_ms = time.time() * 1000
        firsts = [int(first[0][0].split("-")[0]) for first in replies[0::2] if first]
        ingest_left = any(replies[1::2])
        age = max(0.0, now_ms - min(firsts)) if firsts else 0.0
        outbox_lag_ms.append((not ingest_left, age))
        return int(await typed(store.redis.hget("hp:count", "succeeded")) or 0)

    try:
        return await watch(succeeded, total, timeout)
    finally:
        await store.close()


async def receiver_done(port: int, total: int, timeout: float) -> tuple[float, float, int]:
    """Watch the receiver's own request count (it counts the /count polls too: they are subtracted)."""
    async with aiohttp.ClientSession() as session:
        polls = 0

        async def count() -> int:
            nonlocal polls
            polls += 1
            async with session.get(f"http://127.0.0.1:{port}/count") as response:
                return int(await response.text()) - polls

        base = await count()

        async def delivered() -> int:
            return await count() - base

        return await watch(delivered, total, timeout)


def measure(
    worker: subprocess.Popen[bytes], others: dict[str, int], done: Callable[[], tuple[float, float, int]], total: int
) -> Drain:
    pids = {"worker": worker.pid, **others}
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    own_before = cpu_seconds(worker.pid)
    try:
        rate, seconds, count = done()
        used = {name: tree_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        # What the worker's children used (hookpump's history writer process, a Celery prefork pool).
        used["of which worker's children"] = used["worker"] - (cpu_seconds(worker.pid) - own_before)
    finally:
        stop(worker)
    return Drain(rate, seconds, count, {name: s / max(count, 1) * 1000 for name, s in used.items()})


def run_hookpump(
    tmp: Path,
    receiver: subprocess.Popen[bytes],
    receiver_port: int,
    total: int,
    concurrency: int,
    max_in_flight: int,
    timeout: float,
) -> Drain:
    port = free_port()
    redis = start_redis(tmp / "hookpump", port)
    redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        run_async(load_backlog(redis_url, receiver_port, total, max_in_flight))
        # The history store: HOOKPUMP_BENCH_DATABASE_URL (e.g. PostgreSQL), else a SQLite file of this run.
        database_url = os.environ.get("HOOKPUMP_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'history.db'}"
        env = hookpump_env(
            redis_url, allow_private_targets="true", worker_concurrency=str(concurrency), worker_id="bench",
            database_url=database_url,
        )
        worker = start_hookpump("worker", env)
        lag: list[tuple[bool, float]] = []
        drain = measure(
            worker,
            {"redis": redis.pid, "receiver": receiver.pid},
            lambda: run_async(hookpump_done(redis_url, total, timeout, lag)),
            total,
        )
        drain.outbox_lag_ms.extend(lag)
        return drain
    finally:
        stop(redis)


def run_reference(port: int, total: int, concurrency: int) -> float:
    """The ceiling: plain aiohttp, no queue, same requests, same concurrency (its own process)."""
    out = subprocess.run(
        [PYTHON, "-m", "bench.reference_client", str(port), str(total), str(concurrency), PAYLOAD],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip())


def run_celery(
    tmp: Path,
    receiver: subprocess.Popen[bytes],
    receiver_port: int,
    total: int,
    pool: str,
    concurrency: int,
    timeout: float,
) -> Drain:
    port = free_port()
    redis = start_redis(tmp / "celery", port)
    env = dict(os.environ, BENCH_CELERY_BROKER=f"redis://127.0.0.1:{port}/0", BENCH_CELERY_POOL=str(concurrency))
    try:
        urls = [f"http://127.0.0.1:{receiver_port}/e{i}" for i in range(ENDPOINTS)]
        subprocess.run(
            [
                PYTHON,
                "-c",
                "import sys; from bench.celery_app import enqueue; "
                "enqueue(sys.argv[1].split(','), int(sys.argv[2]), sys.argv[3], sys.argv[4])",
                ",".join(urls),
                str(total),
                PAYLOAD,
                generate_secret(),
            ],
            env=env,
            check=True,
            timeout=600,
        )
        worker = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "bench.celery_app",
                "worker",
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return measure(
            worker,
            {"redis": redis.pid, "receiver": receiver.pid},
            lambda: run_async(receiver_done(receiver_port, total, timeout)),
            total,
        )
    finally:
        stop(redis)


def run_arq(tmp: Path, receiver: subprocess.Popen[bytes], receiver_port: int, total: int, timeout: float) -> Drain:
    port = free_port()
    redis = start_redis(tmp / "arq", port)
    redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        urls = [f"http://127.0.0.1:{receiver_port}/e{i}" for i in range(ENDPOINTS)]
        run_async(arq_app.enqueue(redis_url, urls, total, PAYLOAD, generate_secret()))
        worker = subprocess.Popen([PYTHON, "-m", "bench.arq_app", redis_url])
        return measure(
            worker,
            {"redis": redis.pid, "receiver": receiver.pid},
            lambda: run_async(receiver_done(receiver_port, total, timeout)),
            total,
        )
    finally:
        stop(redis)


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = ordered[len(ordered) // 2]
    return f"p50 {median:.0f} ms, p99 {p99:.0f} ms, max {ordered[-1]:.0f} ms ({len(ordered)} samples)"


def cpu_note(name: str, drain: Drain) -> str:
    parts = ", ".join(f"{who} {s:.3f}" for who, s in drain.cpu_per_1000.items())
    return f"{name}: CPU s per 1,000 deliveries: {parts}; drained {drain.done:,} in {drain.seconds:.1f} s"


def run(
    deliveries: int = 60000,
    concurrency: int = 512,
    max_in_flight: int = 50,
    timeout: float = 300,
    alternatives: bool = False,
    celery_pool: str = "prefork",
    celery_concurrency: int = 2,
) -> Result:
    started = time.monotonic()
    total = deliveries // ENDPOINTS * ENDPOINTS
    command = f"python -m bench.throughput --deliveries {deliveries} --concurrency {concurrency} --timeout {timeout:g}"
    if ENDPOINTS != 100:
        command += f" --endpoints {ENDPOINTS} --max-in-flight {max_in_flight}"
    if alternatives:
        command += f" --alternatives --celery-pool {celery_pool} --celery-concurrency {celery_concurrency}"
    title = f"{ENDPOINTS} endpoints, non-binding limits" if ENDPOINTS > 1 else "one endpoint paced at 1,000/s"
    result = Result(f"Delivery throughput, {title}", command)
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as name:
        tmp = Path(name)
        for sub in ("hookpump", "celery", "arq"):
            (tmp / sub).mkdir()
        receiver_port = free_port()
        receiver = start_receiver(receiver_port)
        try:
            print("throughput: hookpump worker ...", file=sys.stderr)
            hp = run_hookpump(tmp, receiver, receiver_port, total, concurrency, max_in_flight, timeout)
            print("throughput: plain aiohttp ...", file=sys.stderr)
            ceiling = run_reference(receiver_port, total, concurrency)
            celery = arq = None
            if alternatives:
                print(f"throughput: celery ({celery_pool} x{celery_concurrency}) ...", file=sys.stderr)
                celery = run_celery(tmp, receiver, receiver_port, total, celery_pool, celery_concurrency, timeout)
                print("throughput: arq ...", file=sys.stderr)
                arq = run_arq(tmp, receiver, receiver_port, total, timeout)
        finally:
            stop(receiver)
    what = f"{total:,} deliveries, hookpump worker concurrency {concurrency}"
    result.rows.append(
        Row(
            f"deliveries/s ({what}) vs plain aiohttp, no queue (machine ceiling)",
            f"{hp.rate:,.0f}/s",
            f"{ceiling:,.0f}/s",
            ratio(hp.rate, ceiling),
        )
    )
    result.notes.append(cpu_note("hookpump", hp))
    if hp.outbox_lag_ms:
        backend = "PostgreSQL" if os.environ.get("HOOKPUMP_BENCH_DATABASE_URL") else "SQLite"
        ages = [age for _, age in hp.outbox_lag_ms]
        # The writer starts behind the backlog's own ingest records; it has caught up at the first
        # sample where those are committed and the newest records wait less than one sampling period.
        caught_up = next((i for i, (ingest_done, age) in enumerate(hp.outbox_lag_ms) if ingest_done and age < 250),
                         len(ages))
        result.notes.append(
            f"hookpump history in {backend}: outbox lag during the drain (the oldest record appended since the "
            f"worker started and not yet committed, sampled every 0.25 s): all samples {percentiles(ages)}; the "
            f"writer caught up with the backlog's {total:,} ingest records after {caught_up * 0.25:.2f} s, and from "
            f"then on {percentiles(ages[caught_up:])}"
        )
    if celery is not None:
        result.rows.append(
            Row(
                f"deliveries/s vs Celery 5, one task per webhook, httpx, {celery_pool} pool "
                f"x{celery_concurrency}, autoretry_for/retry_backoff",
                f"{hp.rate:,.0f}/s",
                f"{celery.rate:,.0f}/s",
                ratio(hp.rate, celery.rate),
            )
        )
        result.notes.append(cpu_note("Celery", celery))
        result.notes.append(
            "Celery's pool was chosen in its favour: prefork with one process per core did best in a pilot run "
            "on this box (threads x8/x32/x128 and prefork x8 were 10-45% slower)"
        )
    if arq is not None:
        result.rows.append(
            Row(
                f"deliveries/s vs arq 0.28, one job per delivery, httpx, max_jobs={arq_app.MAX_JOBS}, "
                f"poll_delay={arq_app.POLL_DELAY}",
                f"{hp.rate:,.0f}/s",
                f"{arq.rate:,.0f}/s",
                ratio(hp.rate, arq.rate),
            )
        )
        result.notes.append(cpu_note("arq", arq))
    result.notes.append(
        "rates are the steady rate between 10% and 90% of the backlog delivered; hookpump counts a "
        "delivery once its attempt record is written, the others once the receiver has it; "
        "every system signs each request (Standard Webhooks HMAC-SHA256), ~500 B JSON payload"
    )
    result.seconds = time.monotonic() - started
    return result


def main() -> None:
    global ENDPOINTS  # read by the loaders above; one run per process
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=60000)
    parser.add_argument("--concurrency", type=int, default=512, help="worker concurrency (and reference's)")
    parser.add_argument("--max-in-flight", type=int, default=50, help="per endpoint")
    parser.add_argument("--timeout", type=float, default=300, help="per system, seconds")
    parser.add_argument(
        "--alternatives", action="store_true", help="also Celery and arq (needs bench/requirements.txt)"
    )
    # Prefork with one process per core did best on the 2-core box (threads x8/x32/x128 and prefork x8 did worse).
    parser.add_argument("--celery-pool", default="prefork", choices=["threads", "prefork", "solo"])
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--endpoints", type=int, default=ENDPOINTS, help="endpoints the backlog is spread over")
    args = parser.parse_args()
    ENDPOINTS = args.endpoints
    result = run(
        args.deliveries,
        args.concurrency,
        args.max_in_flight,
        args.timeout,
        args.alternatives,
        args.celery_pool,
        args.celery_concurrency,
    )
    print(f"machine: {machine_facts()}\n")
    print(result.markdown())


if __name__ == "__main__":
    main()
