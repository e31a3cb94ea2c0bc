"""Delivery throughput: a real `hookpump worker` draining a backlog across 100 endpoints whose limits
are not binding, to a local receiver, with attempt records written; beside it, in the same run, a plain
aiohttp client sending the same requests to the same receiver at the same concurrency (the machine's
ceiling for this workload).

    python -m bench.throughput --deliveries 60000

Everything runs on loopback: a private redis-server (append-only, fsync every second), a uvicorn
receiver, the worker and the reference client, each its own process, sharing this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.processes import cpu_model, cpu_seconds, free_port, start_receiver, start_redis, stop
from core.settings import Settings
from core.store import NewMessage, create_store
from delivery.signing import generate_secret

ENDPOINTS = 100
PAYLOAD = json.dumps({"type": "order.paid", "id": "ord_0123456789", "amount": 4200, "items": ["x" * 40] * 10})


async def load_backlog(redis_url: str, receiver_port: int, deliveries: int, max_in_flight: int) -> None:
    settings = Settings(redis_url=redis_url)
    store = await create_store(settings)
    fields = {"rate_limit_per_minute": 60000, "max_in_flight": max_in_flight, "event_types": None,
              "headers": {}, "description": "bench", "enabled": True, "trace_propagation": True}
    for i in range(ENDPOINTS):
        await store.endpoints.create({**fields, "url": f"http://127.0.0.1:{receiver_port}/e{i}"}, generate_secret())
    # Fan-out: each message goes to all 100 endpoints.
    messages = deliveries // ENDPOINTS
    for start in range(0, messages, 100):
        await store.messages.ingest([NewMessage("order.paid", PAYLOAD, None)] * min(100, messages - start))
    await store.close()


async def watch_hookpump(redis_url: str, total: int, timeout: float) -> tuple[float, float, float]:
    """Returns (steady deliveries/s between 10% and 90% done, seconds to drain all, first-to-last)."""
    store = await create_store(Settings(redis_url=redis_url))
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            done = int(await store.redis.hget("hp:count", "succeeded") or 0)
            samples.append((time.monotonic(), done))
            if done >= total:
                break
            await asyncio.sleep(0.25)
    finally:
        await store.close()
    t10 = next(t for t, d in samples if d >= total * 0.1)
    t90 = next(t for t, d in samples if d >= total * 0.9)
    d10 = next(d for _t, d in samples if d >= total * 0.1)
    d90 = next(d for _t, d in samples if d >= total * 0.9)
    return (d90 - d10) / (t90 - t10), samples[-1][0] - started, t90 - t10


def run_reference(port: int, total: int, concurrency: int) -> float:
    """The ceiling: plain aiohttp, no queue, same requests, same concurrency (its own process)."""
    out = subprocess.run([sys.executable, "-m", "bench.reference_client", str(port), str(total), str(concurrency),
                          PAYLOAD], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=60000)
    parser.add_argument("--concurrency", type=int, default=512, help="worker concurrency (and reference's)")
    parser.add_argument("--max-in-flight", type=int, default=50, help="per endpoint")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as tmp:
        redis_port, receiver_port = free_port(), free_port()
        redis = start_redis(Path(tmp), redis_port)
        receiver = start_receiver(receiver_port)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        try:
            asyncio.run(load_backlog(redis_url, receiver_port, args.deliveries, args.max_in_flight))
            total = args.deliveries // ENDPOINTS * ENDPOINTS
            env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKPUMP_")}
            env.update(HOOKPUMP_REDIS_URL=redis_url, HOOKPUMP_ALLOW_PRIVATE_TARGETS="true",
                       HOOKPUMP_WORKER_CONCURRENCY=str(args.concurrency), HOOKPUMP_LOG_LEVEL="WARNING",
                       HOOKPUMP_WORKER_ID="bench")
            worker = subprocess.Popen([sys.executable, "-m", "hookpump", "worker"], env=env)
            pids = {"worker": worker.pid, "redis": redis.pid, "receiver": receiver.pid}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            try:
                rate, drain, _ = asyncio.run(watch_hookpump(redis_url, total, args.timeout))
                used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            finally:
                stop(worker)
            reference = run_reference(receiver_port, total, args.concurrency)
        finally:
            stop(receiver)
            stop(redis)
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    print(f"command: python -m bench.throughput --deliveries {args.deliveries} --concurrency {args.concurrency}")
    print()
    print("| what | deliveries/s | note |")
    print("|---|---|---|")
    print(f"| hookpump worker, {ENDPOINTS} endpoints | {rate:,.0f} | steady rate 10%..90%; all {total:,} "
          f"drained in {drain:.1f} s, attempt records written |")
    print(f"| plain aiohttp, no queue (ceiling) | {reference:,.0f} | same receiver, concurrency {args.concurrency} |")
    print(f"| ratio | {rate / reference:.2f} | |")
    print()
    print("CPU seconds used while hookpump drained (per 1,000 deliveries): " + ", ".join(
        f"{name} {seconds:.1f} s ({seconds / total * 1000:.3f})" for name, seconds in used.items()))


if __name__ == "__main__":
    main()
