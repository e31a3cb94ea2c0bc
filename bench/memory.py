"""Redis memory per pending delivery, beyond the payload's bytes, at 1,000,000 pending (fan-out 1: each
message has one delivery, spread over 100 endpoints): the `INFO memory` used_memory delta over the
backlog, divided by its size, minus the payload's length. Beside it, in the same run and on the same
redis-server, the same count of payloads as a plain Redis list (the floor for any queue) and as arq
jobs, one per delivery, stored exactly as `enqueue_job` stores them.

    python -m bench.memory --pending 1000000

The backlog is written through `store.messages.ingest` in batches of 1,000 (four concurrent); building
stops early at `--build-limit` seconds, and the count actually built is reported. The references cost the
same per item at any count and are weighed at up to 200,000 items. Redis runs without persistence here
(it does not change used_memory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings, create_pool

from bench import arq_app
from bench.processes import Result, Row, free_port, machine_facts, ratio, run_async, start_redis, stop
from core.settings import Settings
from core.store import NewMessage, Store, create_store
from core.store.connection import typed
from delivery.signing import generate_secret

ENDPOINTS = 100
ITEMS = [{"sku": f"sku_{n:04d}", "qty": 1} for n in range(4)]
PAYLOAD = json.dumps(
    {
        "type": "order.paid",
        "id": "ord_0123456789",
        "customer": "cus_0123456789",
        "amount": 4200,
        "currency": "EUR",
        "items": ITEMS,
    },
    separators=(",", ":"),
)
PAYLOAD_BYTES = len(PAYLOAD.encode())
BATCH = 1000
LANES = 4
# The references cost the same per item at any count (a list of listpacks; one key per arq job), so they
# are weighed at up to this many items to keep the run short.
REFERENCE_ITEMS = 200_000


@dataclass(frozen=True, slots=True)
class Weight:
    count: int
    used_bytes: int  # used_memory delta

    @property
    def per_item(self) -> float:
        return self.used_bytes / self.count if self.count else float("nan")

    @property
    def beyond_payload(self) -> float:
        return self.per_item - PAYLOAD_BYTES


async def used_memory(store: Store) -> int:
    return int((await store.redis.info("memory"))["used_memory"])


async def create_endpoints(store: Store, *, rate: int = 60000, max_in_flight: int = 5) -> list[str]:
    fields: dict[str, Any] = {
        "rate_limit_per_minute": rate,
        "max_in_flight": max_in_flight,
        "event_types": None,
        "headers": {},
        "description": "bench",
        "enabled": True,
        "trace_propagation": True,
    }
    return [
        (await store.endpoints.create({**fields, "url": f"http://127.0.0.1:9/e{i}"}, generate_secret())).id
        for i in range(ENDPOINTS)
    ]


async def fill(store: Store, eids: list[str], count: int, limit: float) -> int:
    """Ingest `count` messages of one delivery each, round-robin over `eids`; stops after `limit` seconds.
    Returns how many were written."""
    batches = iter(range(0, count, BATCH))
    deadline = time.monotonic() + limit
    written = 0

    async def lane() -> None:
        nonlocal written
        for start in batches:
            if time.monotonic() > deadline:
                return
            size = min(BATCH, count - start)
            await store.messages.ingest(
                [NewMessage("order.paid", PAYLOAD, [eids[(start + i) % len(eids)]]) for i in range(size)]
            )
            written += size

    await asyncio.gather(*(lane() for _ in range(LANES)))
    return written


async def weigh_list(store: Store, count: int) -> Weight:
    before = await used_memory(store)
    for start in range(0, count, BATCH):
        await typed(store.redis.rpush("bench:list", *([PAYLOAD] * min(BATCH, count - start))))
    weight = Weight(count, await used_memory(store) - before)
    await store.redis.flushdb()
    return weight


async def weigh_arq(redis_url: str, store: Store, count: int) -> Weight:
    before = await used_memory(store)
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await arq_app.store_jobs(pool, "http://127.0.0.1:9/e0", count, PAYLOAD, generate_secret())
    finally:
        await pool.aclose()
    weight = Weight(count, await used_memory(store) - before)
    await store.redis.flushdb()
    return weight


async def weigh_hookpump(store: Store, count: int, limit: float) -> tuple[list[str], Weight, float]:
    """Leaves the backlog in place (bench.pump_cost measures claims on it): (endpoint ids, weight, seconds)."""
    eids = await create_endpoints(store)
    before = await used_memory(store)
    started = time.monotonic()
    written = await fill(store, eids, count, limit)
    seconds = time.monotonic() - started
    return eids, Weight(written, await used_memory(store) - before), seconds


async def weigh_all(redis_url: str, count: int, limit: float) -> tuple[Weight, Weight, Weight, float]:
    """(hookpump, list, arq, seconds to build hookpump's backlog); the hookpump backlog is left in place."""
    store = await create_store(Settings(redis_url=redis_url))
    try:
        await store.redis.flushdb()
        print("memory: plain list ...", file=sys.stderr)
        plain = await weigh_list(store, min(count, REFERENCE_ITEMS))
        print("memory: arq jobs ...", file=sys.stderr)
        arq = await weigh_arq(redis_url, store, min(count, REFERENCE_ITEMS))
        print(f"memory: hookpump backlog of {count:,} ...", file=sys.stderr)
        _, hookpump, seconds = await weigh_hookpump(store, count, limit)
        return hookpump, plain, arq, seconds
    finally:
        await store.close()


def result(hookpump: Weight, plain: Weight, arq: Weight, seconds: float, command: str) -> Result:
    title = f"Redis memory per pending delivery at {hookpump.count:,} pending, fan-out 1"
    res = Result(title, command)
    res.rows += [
        Row(
            "bytes per pending delivery beyond the payload vs a plain Redis list of the payloads (floor)",
            f"{hookpump.beyond_payload:,.0f} B",
            f"{plain.beyond_payload:,.0f} B",
            ratio(hookpump.beyond_payload, plain.beyond_payload),
        ),
        Row(
            "bytes per pending delivery beyond the payload vs arq, one job per delivery (job key + queue entry)",
            f"{hookpump.beyond_payload:,.0f} B",
            f"{arq.beyond_payload:,.0f} B",
            ratio(hookpump.beyond_payload, arq.beyond_payload),
        ),
    ]
    res.notes += [
        f"payload {PAYLOAD_BYTES} B of compact JSON; used_memory grew by {hookpump.used_bytes / 2**20:,.0f} MiB for "
        f"{hookpump.count:,} deliveries ({hookpump.per_item:,.0f} B each with the payload), built in {seconds:.0f} s "
        f"({hookpump.count / max(seconds, 1e-9):,.0f} msg/s through store.messages.ingest, batches of {BATCH})",
        f"list {plain.count:,} items: {plain.per_item:,.0f} B each; arq {arq.count:,} jobs: {arq.per_item:,.0f} B "
        "each (the arq job also carries the URL and secret, as a team's job would)",
        "hookpump keeps per pending delivery: the message hash and its payload string, the delivery hash, its "
        "due-set entry and, since no history writer runs here, its "
        "records in the history outbox (hp:log:<p>); `python -m bench.history redis` weighs it with the outbox drained",
    ]
    return res


def run(pending: int = 1_000_000, build_limit: float = 300.0) -> Result:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as tmp:
        port = free_port()
        redis = start_redis(Path(tmp), port, appendonly=False)
        try:
            weights = run_async(weigh_all(f"redis://127.0.0.1:{port}/0", pending, build_limit))
        finally:
            stop(redis)
    res = result(*weights, command=f"python -m bench.memory --pending {pending} --build-limit {build_limit:g}")
    res.seconds = time.monotonic() - started
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--build-limit", type=float, default=300.0, help="seconds at most to build the backlog")
    args = parser.parse_args()
    res = run(args.pending, args.build_limit)
    print(f"machine: {machine_facts()}\n")
    print(res.markdown())


if __name__ == "__main__":
    main()
