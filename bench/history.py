"""The history store's costs: Redis bytes per pending delivery and per finished one once the outbox
has drained, disk bytes per delivery with one attempt (PostgreSQL and SQLite), delivery-log query
latency at size, and outbox lag under load.

    python -m bench.history redis --count 100000 [--build-limit 120]
    python -m bench.history disk --count 50000
    python -m bench.history queries --postgres 300000 10000000 --sqlite 100000
    python -m bench.history lag --seconds 20 --rate 400 [--postgres]

PostgreSQL: HOOKPUMP_BENCH_DATABASE_URL, else a database with a unique name created on
127.0.0.1:5432 (user postgres) and dropped afterwards; `queries` measures a given database that
already holds deliveries as it is (fill 10,000,000 once, then measure after each change). Redis: a
private redis-server. Query figures are through the HistoryStore adapter (what GET /v1/deliveries
runs after parsing), not over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.history_fill import RECORD, batches, endpoint_id, event_type, fill_postgres
from bench.memory import PAYLOAD_BYTES, create_endpoints, fill, used_memory
from bench.processes import free_port, machine_facts, start_redis, stop
from core import keys
from core.history import HistoryBatch, HistoryStore
from core.history.postgres import PostgresHistory
from core.history.postgres.admin import execute, fetch, scratch_database
from core.history.sqlite import SqliteHistory
from core.history.writer import HistoryWriter
from core.ids import message_id_of
from core.models import DeliveryFilter, DeliveryStatus
from core.settings import Settings
from core.store import Actor, NewMessage, Store, create_store

DAY = 86_400_000
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def postgres_url() -> AsyncIterator[str]:
    given = os.environ.get("HOOKPUMP_BENCH_DATABASE_URL")
    if given:
        yield given
        return
    async with scratch_database(ADMIN_URL, "hookpump_bench") as url:
        yield url


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-redis-") as directory:
        port = free_port()
        process = start_redis(Path(directory), port, appendonly=False)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process)


async def drain(store: Store, history: HistoryStore) -> None:
    writer = HistoryWriter(store.outbox, history, consumer="bench")
    await store.outbox.ensure_group()
    while (await store.outbox.backlog()).length:
        await writer.drain_once(block_ms=20)


# --- Redis bytes -----------------------------------------------------------------------------------


async def redis_bytes(count: int, build_limit: float = 120.0) -> dict[str, Any]:
    async with private_redis() as url:
        store = await create_store(Settings(redis_url=url))
        with tempfile.TemporaryDirectory() as directory:
            history = SqliteHistory(str(Path(directory) / "history.db"))
            await history.open()
            try:
                eids = await create_endpoints(store)
                base = await used_memory(store)
                written = await fill(store, eids, count, limit=build_limit)
                with_outbox = await used_memory(store) - base
                await drain(store, history)
                pending = await used_memory(store) - base
                dids = [d.id for d in (await history.list_deliveries(DeliveryFilter(), limit=count, cursor=None))[0]]
                parts = await breakdown(store, eids, dids, pending)
                for start in range(0, len(dids), 1000):
                    await store.operations.cancel(dids[start:start + 1000], Actor("bench"))
                await drain(store, history)
                finished = await used_memory(store) - base
                keys: dict[str, int] = {}
                async for key in store.redis.scan_iter(match="hp:*", count=1000):
                    kind = ":".join(key.split(":")[:2])
                    keys[kind] = keys.get(kind, 0) + 1
            finally:
                await history.close()
                await store.close()
    return {
        "deliveries": written,
        "pending_with_undrained_outbox_bytes": round(with_outbox / written - PAYLOAD_BYTES),
        "pending_beyond_payload_bytes": round(pending / written - PAYLOAD_BYTES),
        "pending_breakdown_bytes": parts,
        "finished_after_drain_bytes": round(finished / written),
        "keys_left_after_drain": keys,
        "payload_bytes": PAYLOAD_BYTES,
    }


async def breakdown(store: Store, eids: list[str], dids: list[str], used_bytes: int) -> dict[str, int]:
    """Bytes per pending delivery by key, from MEMORY USAGE (which counts a key's name and its entry
    in the key table): the per-delivery keys averaged over 500 deliveries spread over the backlog,
    the due sets whole; "rest" is what no key accounts for (the key table's buckets, allocator
    rounding, the few per-endpoint keys)."""
    sample = dids[:: max(1, len(dids) // 500)]

    async def mean(names: list[str]) -> float:
        pipe = store.redis.pipeline(transaction=False)
        for name in names:
            pipe.memory_usage(name, samples=0)
        sizes = await pipe.execute()
        return sum(size or 0 for size in sizes) / len(names)

    mids = [message_id_of(did) for did in sample]
    parts = {
        "delivery hash hp:dlv:{did}": await mean([keys.delivery(did) for did in sample]),
        "message hash hp:msg:{mid}": await mean([keys.message(mid) for mid in mids]),
        "payload string hp:msg:{mid}:payload, with the payload":
            await mean([keys.message_payload(mid) for mid in mids]),
        "due-set entry hp:ep:{eid}:due": await mean([keys.due(eid) for eid in eids]) * len(eids) / len(dids),
    }
    parts["rest"] = used_bytes / len(dids) - sum(parts.values())
    return {name: round(size) for name, size in parts.items()}


# --- disk bytes ------------------------------------------------------------------------------------


async def write_all(history: HistoryStore, work: list[HistoryBatch]) -> float:
    started = time.perf_counter()
    for batch in work:
        await history.write(batch)
    return time.perf_counter() - started


async def postgres_bytes(url: str) -> int:
    [(size,)] = await fetch(
        url, "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'hp\\_%'")
    return int(size)


async def disk_bytes(count: int) -> dict[str, Any]:
    work = batches(count, mixed=False)
    out: dict[str, Any] = {"deliveries": count, "attempt_record_bytes": len(RECORD)}
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "history.db")
        sqlite_store = SqliteHistory(path)
        await sqlite_store.open()
        seconds = await write_all(sqlite_store, work)
        await sqlite_store.close()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["sqlite_bytes_per_delivery"] = round(Path(path).stat().st_size / count)  # noqa: ASYNC240

        out["sqlite_rows_per_second"] = round(2 * count / seconds)
    async with postgres_url() as url:
        pg_store = PostgresHistory(url)
        await pg_store.open()
        empty = await postgres_bytes(url)
        seconds = await write_all(pg_store, work)
        await pg_store.close()
        await execute(url, "VACUUM ANALYZE")
        out["postgres_bytes_per_delivery"] = round((await postgres_bytes(url) - empty) / count)
        out["postgres_rows_per_second"] = round(2 * count / seconds)
    return out


# --- queries ---------------------------------------------------------------------------------------


def filters(newest_ms: int, message_id: str) -> dict[str, DeliveryFilter]:
    """Every filter GET /v1/deliveries takes, alone and in the combinations with an index of their own."""
    failed, queued = frozenset({DeliveryStatus.FAILED}), frozenset({DeliveryStatus.PENDING, DeliveryStatus.RETRYING})
    return {
        "none": DeliveryFilter(),
        "endpoint": DeliveryFilter(endpoint_id=endpoint_id(7)),
        "status=failed": DeliveryFilter(statuses=failed),
        "status=pending,retrying": DeliveryFilter(statuses=queued),
        "endpoint+status": DeliveryFilter(endpoint_id=endpoint_id(46), statuses=failed),
        "event_type": DeliveryFilter(event_type=event_type(3)),
        "endpoint+event_type": DeliveryFilter(endpoint_id=endpoint_id(7), event_type=event_type(7)),
        "message_id": DeliveryFilter(message_id=message_id),
        "since 1 h": DeliveryFilter(since_ms=newest_ms - 3_600_000),
        "since+until (1 h, a day back)": DeliveryFilter(since_ms=newest_ms - DAY - 3_600_000,
                                                        until_ms=newest_ms - DAY),
        "endpoint+since+until": DeliveryFilter(endpoint_id=endpoint_id(7), since_ms=newest_ms - DAY - 3_600_000,
                                               until_ms=newest_ms - DAY),
    }


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p(samples: list[float], q: int) -> float:
    return round(statistics.quantiles(samples, n=100, method="inclusive")[q - 1], 2) if len(samples) > 1 else 0.0


async def query_figures(history: HistoryStore, queries: int, days: int) -> dict[str, dict[str, float]]:
    """p50/p99 of the first page, of a cursor page 20 pages in, and of a page from a cursor half-way
    back through the stored days (a keyset that is not an index condition shows there)."""
    sample = (await history.list_deliveries(DeliveryFilter(), limit=1000, cursor=None))[0]
    newest = sample[0].created_at_ms
    a_day_back = DeliveryFilter(since_ms=newest - DAY - 3_600_000, until_ms=newest - DAY)
    message_id = (await history.list_deliveries(a_day_back, limit=1, cursor=None))[0][0].message_id
    halfway = DeliveryFilter(until_ms=newest - days * DAY // 2)
    halfway_cursor = (await history.list_deliveries(halfway, limit=1, cursor=None))[0][0].id
    figures = {}
    for name, wanted in filters(newest, message_id).items():
        first, cursor = await history.list_deliveries(wanted, limit=50, cursor=None)
        deep_cursor = cursor
        for _ in range(20):  # 20 pages in: a cursor page past the newest rows
            if deep_cursor is None:
                break
            _, next_cursor = await history.list_deliveries(wanted, limit=50, cursor=deep_cursor)
            if next_cursor is None:
                break
            deep_cursor = next_cursor
        first_page = await timed(lambda w=wanted: history.list_deliveries(w, limit=50, cursor=None), queries)
        figures[name] = {"first_p50_ms": p(first_page, 50), "first_p99_ms": p(first_page, 99),
                         "page_rows": len(first)}
        if deep_cursor is not None:
            cursor_page = await timed(
                lambda w=wanted, c=deep_cursor: history.list_deliveries(w, limit=50, cursor=c), queries)
            figures[name] |= {"cursor_p50_ms": p(cursor_page, 50), "cursor_p99_ms": p(cursor_page, 99)}
        if wanted.message_id is None and wanted.since_ms is None and wanted.until_ms is None:
            halfway_page = await timed(
                lambda w=wanted: history.list_deliveries(w, limit=50, cursor=halfway_cursor), queries)
            figures[name] |= {"halfway_p50_ms": p(halfway_page, 50), "halfway_p99_ms": p(halfway_page, 99)}
    ids = [d.id for d in sample]
    detail = await timed(lambda: history.get_delivery(random.choice(ids)), queries)
    figures["detail (delivery+attempts)"] = {"first_p50_ms": p(detail, 50), "first_p99_ms": p(detail, 99)}
    log = await timed(lambda: history.endpoint_attempts(endpoint_id(7), limit=50, cursor=None), queries)
    figures["endpoint attempt log"] = {"first_p50_ms": p(log, 50), "first_p99_ms": p(log, 99)}
    return figures


async def postgres_queries(url: str, size: int, days: int, count: int) -> dict[str, Any]:
    """A database that already holds deliveries (a given HOOKPUMP_BENCH_DATABASE_URL) is measured as
    it is: fill it once, then measure after each change."""
    pg = PostgresHistory(url)
    await pg.open()
    try:
        [(held,)] = await fetch(url, "SELECT count(*) FROM hp_delivery")
        out: dict[str, Any] = {"deliveries": size}
        if held:
            out = {"deliveries": int(held), "filled": "before this run"}
        else:
            empty = await postgres_bytes(url)
            started = time.monotonic()
            await fill_postgres(pg, url, size, days=days, progress=True)
            out["fill_seconds"] = round(time.monotonic() - started)
            out["bytes_per_delivery"] = round((await postgres_bytes(url) - empty) / size)
            print(f"postgres: {size:,} deliveries filled in {out['fill_seconds']} s", file=sys.stderr)
        [(partitions,)] = await fetch(
            url, "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = 'hp_delivery'")
        out["partitions"] = int(partitions)
        out["figures"] = await query_figures(pg, count, days)
        return out
    finally:
        await pg.close()


async def queries(postgres_sizes: list[int], sqlite_size: int, count: int, days: int) -> dict[str, Any]:
    out: dict[str, Any] = {"days": days}
    if sqlite_size:
        with tempfile.TemporaryDirectory() as directory:
            store = SqliteHistory(str(Path(directory) / "history.db"))
            await store.open()
            seconds = await write_all(store, batches(sqlite_size, days=days))
            print(f"sqlite: {sqlite_size:,} deliveries written in {seconds:.1f} s", file=sys.stderr)
            out["sqlite"] = {"deliveries": sqlite_size, "figures": await query_figures(store, count, days)}
            await store.close()
    out["postgres"] = []
    for size in postgres_sizes:
        async with postgres_url() as url:
            out["postgres"].append(await postgres_queries(url, size, days, count))
    return out


# --- outbox lag ------------------------------------------------------------------------------------


async def lag(seconds: float, rate: int, postgres: bool) -> dict[str, Any]:
    if not postgres:
        with tempfile.TemporaryDirectory() as directory:
            return {"backend": "sqlite", **await lag_on(seconds, rate, f"sqlite:///{directory}/history.db")}
    async with postgres_url() as url:
        return {"backend": "postgres", **await lag_on(seconds, rate, url)}


async def lag_on(seconds: float, rate: int, database_url: str) -> dict[str, Any]:
    """A real worker delivers to a local receiver while messages arrive at `rate`/s; every 20 ms the
    age of the oldest record not yet in the history store is sampled. A record's lag (change
    in Redis to visible in GET /v1/deliveries) is at most the oldest age at the next sample."""
    from scheduler.worker import run_worker
    from tests.pumping import make_endpoint
    from tests.receiver import Receiver

    receiver = await Receiver().start()
    async with private_redis() as url:
        settings = Settings(redis_url=url, database_url=database_url, api_key="bench-admin-key-0123456789abcdef",
                            allow_private_targets=True, pump_interval=1.0, log_format="text", log_level="WARNING")
        store = await create_store(settings)
        eids = [await make_endpoint(store, receiver.url(f"/e{i}"), rate_limit_per_minute=60000, max_in_flight=50)
                for i in range(10)]
        stop_event = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop_event))
        ages: list[float] = []
        sent = 0
        started = time.monotonic()
        async def produce() -> None:
            nonlocal sent
            while time.monotonic() - started < seconds:
                await store.messages.ingest([NewMessage("order.paid", '{"n":1}', [random.choice(eids)])
                                             for _ in range(max(1, rate // 20))])
                sent += max(1, rate // 20)
                await asyncio.sleep(0.05)

        async def sample() -> None:
            while time.monotonic() - started < seconds:
                ages.append((await store.outbox.backlog()).oldest_age_seconds or 0.0)
                await asyncio.sleep(0.02)

        await asyncio.gather(produce(), sample())
        stop_event.set()
        await worker
        await store.close()
    await receiver.stop()
    return {"messages": sent, "seconds": seconds, "received": len(receiver.received),
            "oldest_age_p50_ms": round(p(ages, 50) * 1000), "oldest_age_p99_ms": round(p(ages, 99) * 1000),
            "oldest_age_max_ms": round(max(ages) * 1000), "samples": len(ages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    redis_parser = sub.add_parser("redis")
    redis_parser.add_argument("--count", type=int, default=100_000)
    redis_parser.add_argument("--build-limit", type=float, default=120, help="seconds at most to build the backlog")
    sub.add_parser("disk").add_argument("--count", type=int, default=50_000)
    q = sub.add_parser("queries")
    q.add_argument("--postgres", type=int, nargs="*", default=[300_000],
                   help="one PostgreSQL database per size, filled server-side (see bench/history_fill.py)")
    q.add_argument("--sqlite", type=int, default=100_000, help="0: none")
    q.add_argument("--queries", type=int, default=200, help="timed calls per figure")
    q.add_argument("--days", type=int, default=7, help="days the deliveries are spread over, ending now")
    lag_parser = sub.add_parser("lag")
    lag_parser.add_argument("--seconds", type=float, default=20)
    lag_parser.add_argument("--rate", type=int, default=400)
    lag_parser.add_argument("--postgres", action="store_true", help="history in PostgreSQL (default SQLite)")
    args = parser.parse_args()
    if args.what == "redis":
        result = asyncio.run(redis_bytes(args.count, args.build_limit))
    elif args.what == "disk":
        result = asyncio.run(disk_bytes(args.count))
    elif args.what == "queries":
        result = asyncio.run(queries(args.postgres, args.sqlite, args.queries, args.days))
    else:
        result = asyncio.run(lag(args.seconds, args.rate, args.postgres))
    print(json.dumps({"machine": machine_facts(), "command": " ".join(sys.argv), **result}, indent=2))


if __name__ == "__main__":
    main()
