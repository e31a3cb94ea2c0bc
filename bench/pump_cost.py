"""Pump cost per tick at a backlog of 10,000 and of 1,000,000 pending deliveries over 100 endpoints (the
ratio should be near 1: a tick costs O(endpoints ready now), not O(backlog)). A tick here is what the
pump does each iteration: `store.pump.claim(...)` with the real pump's limits (500 deliveries, 200
endpoints, 200 ms horizon; 100 endpoints x max_in_flight 5 = 500), then `store.pump.complete(...)` of
every claimed delivery. Redis-side time per script call comes from `INFO commandstats` deltas around
it, wall time (which adds the round trip and parsing in Python) from this client.

    python -m bench.pump_cost --small 10000 --large 1000000 --ticks 50

Each delivery is completed as a retry due at once (with an attempt record, as a 503 would write), so the
backlog stays the same size while ticks are measured. The backlogs are built through
`store.messages.ingest` in batches of 1,000 (bench/memory.py), stopping at `--build-limit` seconds; with
--weigh, the large one is also weighed and the memory benchmark's figures come from the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import memory
from bench.processes import Result, Row, free_port, machine_facts, quantile, ratio, run_async, start_redis, stop
from core.clock import now_ms
from core.settings import Settings
from core.store import ClaimedDelivery, Completion, Store, create_store
from core.store.connection import hgetall
from scheduler.pump import HORIZON_MS, MAX_DELIVERIES_PER_CLAIM, MAX_ENDPOINTS_PER_CLAIM

WORKER = "bench-pump-cost"
WARMUP_TICKS = 5


@dataclass(frozen=True, slots=True)
class Cost:
    backlog: int  # queued deliveries while measuring
    claim_us: list[float]  # Redis-side, per claim call
    complete_us: list[float]  # Redis-side, per complete call
    tick_ms: list[float]  # claim + complete, wall time at the client
    claimed: float  # mean deliveries per tick


def record(delivery: ClaimedDelivery) -> dict[str, object]:
    """An attempt record shaped like delivery/attempt.py's for a 503."""
    request = {"url": "http://127.0.0.1:9/e", "headers": {"webhook-id": delivery.message_id}}
    return {
        "number": delivery.attempt,
        "trigger": delivery.trigger,
        "started_at": "2026-01-01T00:00:00.000Z",
        "duration_ms": 1.234,
        "request": request,
        "response": {"status": 503, "headers": {"content-type": "text/plain"}, "body": "busy", "body_truncated": False},
        "error": None,
        "outcome": "retry",
    }


async def script_usec(store: Store) -> float:
    """Redis-side microseconds spent in EVALSHA so far (a script's time includes the commands it runs)."""
    stats = await store.redis.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def ticks(store: Store, count: int) -> Cost:
    """`count` ticks after WARMUP_TICKS; Redis-side time of each script call from INFO commandstats
    deltas taken around it (nothing else talks to this Redis meanwhile)."""
    claim_us: list[float] = []
    complete_us: list[float] = []
    tick_ms: list[float] = []
    claimed = 0
    for n in range(WARMUP_TICKS + count):
        before = await script_usec(store)
        started = time.perf_counter()
        claim = await store.pump.claim(
            WORKER,
            horizon_ms=HORIZON_MS,
            max_endpoints=MAX_ENDPOINTS_PER_CLAIM,
            max_deliveries=MAX_DELIVERIES_PER_CLAIM,
        )
        claim_ms = (time.perf_counter() - started) * 1000
        between = await script_usec(store)
        now = now_ms()
        completions = [
            Completion(
                d.id,
                d.attempt,
                "retry",
                due_ms=now,
                status_code=503,
                error="the receiver answered 503",
                record=record(d),
            )
            for d in claim.deliveries
        ]
        started = time.perf_counter()
        await store.pump.complete(completions)
        complete_ms = (time.perf_counter() - started) * 1000
        after = await script_usec(store)
        if n >= WARMUP_TICKS:
            claim_us.append(between - before)
            complete_us.append(after - between)
            tick_ms.append(claim_ms + complete_ms)
            claimed += len(claim.deliveries)
    counts = await hgetall(store.redis, "hp:count")
    backlog = int(counts.get("pending", 0)) + int(counts.get("retrying", 0))
    return Cost(backlog, claim_us, complete_us, tick_ms, claimed / max(count, 1))


async def small_backlog(redis_url: str, size: int, count: int, limit: float) -> Cost:
    store = await create_store(Settings(redis_url=redis_url))
    try:
        await store.redis.flushdb()
        eids = await memory.create_endpoints(store)
        await memory.fill(store, eids, size, limit)
        return await ticks(store, count)
    finally:
        await store.redis.flushdb()
        await store.close()


async def large_backlog(
    redis_url: str, size: int, count: int, limit: float, weigh: bool
) -> tuple[Cost, tuple[memory.Weight, memory.Weight, memory.Weight, float] | None]:
    weights = None
    if weigh:
        weights = await memory.weigh_all(redis_url, size, limit)  # leaves the hookpump backlog in place
    store = await create_store(Settings(redis_url=redis_url))
    try:
        if not weigh:
            await memory.fill(store, await memory.create_endpoints(store), size, limit)
        print("pump cost: ticks on the large backlog ...", file=sys.stderr)
        return await ticks(store, count), weights
    finally:
        await store.close()


def describe(values: list[float], unit: str) -> str:
    return f"{quantile(values, 0.5):,.0f} {unit} (p90 {quantile(values, 0.9):,.0f})"


def run(
    small: int = 10_000, large: int = 1_000_000, count: int = 50, build_limit: float = 300.0, weigh: bool = False
) -> list[Result]:
    """The pump cost result, and with `weigh` the memory result measured on the same large backlog."""
    started = time.monotonic()
    command = f"python -m bench.pump_cost --small {small} --large {large} --ticks {count} --build-limit {build_limit:g}"
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as tmp:
        port = free_port()
        redis = start_redis(Path(tmp), port, appendonly=False)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            print(f"pump cost: backlog of {small:,} ...", file=sys.stderr)
            low = run_async(small_backlog(url, small, count, build_limit))
            high, weights = run_async(large_backlog(url, large, count, build_limit, weigh))
        finally:
            stop(redis)
    res = Result(f"Pump cost per tick at {high.backlog:,} vs {low.backlog:,} pending deliveries", command)
    q50 = 0.5
    res.rows += [
        Row(
            f"claim script, Redis-side µs per call, median (p90), at {high.backlog:,} vs at {low.backlog:,} queued",
            describe(high.claim_us, "µs"),
            describe(low.claim_us, "µs"),
            ratio(quantile(high.claim_us, q50), quantile(low.claim_us, q50)),
        ),
        Row(
            "complete script, Redis-side µs per call, same comparison",
            describe(high.complete_us, "µs"),
            describe(low.complete_us, "µs"),
            ratio(quantile(high.complete_us, q50), quantile(low.complete_us, q50)),
        ),
        Row(
            "whole tick (claim + complete), wall ms at the client (without the INFO calls), same comparison",
            describe(high.tick_ms, "ms"),
            describe(low.tick_ms, "ms"),
            ratio(quantile(high.tick_ms, q50), quantile(low.tick_ms, q50)),
        ),
    ]
    res.notes += [
        f"{count} ticks each after {WARMUP_TICKS} warm-up ticks; {high.claimed:.0f} and {low.claimed:.0f} deliveries "
        "claimed per tick (100 endpoints x max_in_flight 5)",
        f"backlogs asked for: {small:,} and {large:,}; built as far as {build_limit:g} s allowed: "
        f"{low.backlog:,} and {high.backlog:,}",
    ]
    res.seconds = time.monotonic() - started
    results = [res]
    if weights is not None:
        mem = memory.result(*weights, command=f"python -m bench.memory --pending {large} --build-limit {build_limit:g}")
        mem.notes.append(
            f"in this run, measured on the large backlog of the pump cost benchmark above (`{command} --weigh`)"
        )
        results.append(mem)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--build-limit", type=float, default=300.0, help="seconds at most to build each backlog")
    parser.add_argument("--weigh", action="store_true", help="also report Redis memory per pending delivery")
    args = parser.parse_args()
    print(f"machine: {machine_facts()}\n")
    for res in run(args.small, args.large, args.ticks, args.build_limit, args.weigh):
        print(res.markdown())


if __name__ == "__main__":
    main()
