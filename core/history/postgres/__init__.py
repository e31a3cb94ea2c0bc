"""The PostgreSQL history store (production). The only importer of `asyncpg`.

Tables are range-partitioned by the delivery's creation day (see migrations/0001_history.sql). The
adapter creates partitions a week ahead, creates a missing one when a write needs it, and retention
detaches and drops whole days. It connects lazily: a database that is down at start-up (or later)
makes each call raise HistoryUnavailable until it answers again; nothing else waits for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.errors import HistoryRecordRejected, HistorySchemaTooNew, HistoryUnavailable
from core.history import migrations
from core.history.protocol import TERMINAL_STATUSES, DailyCount, DeliveryHistory
from core.history.queries import (
    DELIVERY_COLUMNS,
    attempt_json,
    day_start,
    decode_attempt_cursor,
    delivery_from_row,
    delivery_where,
    encode_attempt_cursor,
    message_from_row,
    page_of,
)
from core.history.records import HistoryBatch
from core.ids import created_ms
from core.models import Delivery, DeliveryFilter, Message

DAY_MS = 86_400_000
PREMAKE_DAYS = 7
PARTITIONED = ("hp_delivery", "hp_attempt", "hp_action", "hp_message")
# One advisory lock key for schema changes (migrations, partitions): processes take turns.
SCHEMA_LOCK = 0x68705F68  # "hp_h"
CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 30.0

# Each table is written with one statement per batch, its rows passed as one array per column
# (`unnest`): PostgreSQL plans and runs one INSERT for the batch instead of one per row, which is
# what executemany does. Measured in bench.throughput (BENCHMARKS.md): PostgreSQL's CPU per 1,000
# deliveries fell by about a third. A batch holds each key once (HistoryBatch), as ON CONFLICT DO
# UPDATE requires of one statement.
UPSERT_DELIVERIES = f"""
INSERT INTO hp_delivery (created_ms, {DELIVERY_COLUMNS}, version)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[],
  $8::bigint[], $9::bigint[], $10::integer[], $11::text[], $12::bigint[])
ON CONFLICT (created_ms, id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
  updated_ms = excluded.updated_ms, next_attempt_ms = excluded.next_attempt_ms, last_code = excluded.last_code,
  last_error = excluded.last_error, version = excluded.version
WHERE excluded.version > hp_delivery.version
"""
UPSERT_ATTEMPTS = """
INSERT INTO hp_attempt (delivery_created_ms, delivery_id, number, endpoint_id, recorded_ms, record, cut_reason)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::text[], $5::bigint[], $6::text[], $7::text[])
ON CONFLICT (delivery_created_ms, delivery_id, number) DO UPDATE SET recorded_ms = excluded.recorded_ms,
  record = excluded.record, cut_reason = excluded.cut_reason
WHERE excluded.recorded_ms >= hp_attempt.recorded_ms
"""
INSERT_MESSAGES = """
INSERT INTO hp_message (created_ms, id, event_type, payload, trace, delivery_ids, accepted_ms)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
ON CONFLICT DO NOTHING
"""
INSERT_ACTIONS = """
INSERT INTO hp_action (delivery_created_ms, delivery_id, seq, action)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING
"""


def partition_name(table: str, day_ms: int) -> str:
    return f"{table}_p{datetime.fromtimestamp(day_ms / 1000, UTC):%Y%m%d}"


class PostgresHistory:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._known_days: set[int] = set()

    def __repr__(self) -> str:
        return "PostgresHistory(<HOOKPUMP_DATABASE_URL>)"  # the URL may hold a password

    async def open(self) -> None:
        await self._ready()

    async def _ready(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise HistoryUnavailable(f"PostgreSQL history store unreachable: {exc}") from exc
        try:
            async with pool.acquire() as db:
                await self._migrate(db)
                await self._ensure_days(db, range(-1, PREMAKE_DAYS + 1))
        except HistorySchemaTooNew:
            await pool.close()
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            raise HistoryUnavailable(f"PostgreSQL history store could not be prepared: {exc}") from exc
        self._pool = pool
        return pool

    async def _migrate(self, db: asyncpg.Connection) -> None:
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            await db.execute(migrations.LEDGER)
            applied = {r["version"] for r in await db.fetch("SELECT version FROM hp_schema_migrations")}
            for migration in migrations.pending(migrations.migrations_of(__name__), applied, "PostgreSQL"):
                for statement in migration.statements():
                    await db.execute(statement)
                await db.execute("INSERT INTO hp_schema_migrations VALUES ($1, $2, $3)",
                                 migration.version, migration.name, int(time.time() * 1000))

    async def _ensure_days(self, db: asyncpg.Connection, offsets: range, *, days: set[int] | None = None) -> None:
        """Create the daily partitions for today + each offset (and `days`, as day-start ms)."""
        today = day_start(int(time.time() * 1000))
        wanted = {today + o * DAY_MS for o in offsets} | (days or set())
        missing = sorted(wanted - self._known_days)
        if not missing:
            return
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            for day in missing:
                for table in PARTITIONED:
                    await db.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
                                     f"FOR VALUES FROM ({day}) TO ({day + DAY_MS})")
        self._known_days.update(missing)

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._ready()
        try:
            async with pool.acquire() as db:
                yield db
        except (asyncpg.DataError, asyncpg.ProgramLimitExceededError, asyncpg.IntegrityConstraintViolationError,
                UnicodeEncodeError) as exc:
            raise HistoryRecordRejected(f"PostgreSQL refused {what}: {exc}") from exc
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError):
                self._known_days.clear()  # a restarted server may have lost nothing, but check again
            raise HistoryUnavailable(f"PostgreSQL history store failed during {what}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        async with self._connection("a ping") as db:
            await db.fetchval("SELECT 1")

    async def write(self, batch: HistoryBatch) -> None:
        days = {day_start(d.created_ms) for d in batch.deliveries.values()}
        days |= {day_start(a.delivery_created_ms) for a in batch.attempts.values()}
        days |= {day_start(x.delivery_created_ms) for x in batch.actions.values()}
        days |= {day_start(m.partition_ms) for m in batch.messages.values()}
        async with self._connection(f"writing {len(batch)} records") as db:
            await self._ensure_days(db, range(0), days=days)
            async with db.transaction():
                await _insert_rows(db, INSERT_MESSAGES, [
                    (m.partition_ms, m.id, m.event_type, m.payload_json, m.trace, m.delivery_ids, m.created_ms)
                    for m in batch.messages.values()])
                await _insert_rows(db, UPSERT_DELIVERIES, [
                    (d.created_ms, d.id, d.message_id, d.endpoint_id, d.event_type, d.status, d.attempts,
                     d.updated_ms, d.next_attempt_ms, d.last_code, d.last_error, d.version)
                    for d in batch.deliveries.values()])
                await _insert_rows(db, UPSERT_ATTEMPTS, [
                    (a.delivery_created_ms, a.delivery_id, a.number, a.endpoint_id, a.recorded_ms, a.record_json,
                     a.cut_reason) for a in batch.attempts.values()])
                await _insert_rows(db, INSERT_ACTIONS, [
                    (x.delivery_created_ms, x.delivery_id, x.seq, x.action_json) for x in batch.actions.values()])

    async def list_deliveries(
        self, wanted: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        where, params = delivery_where(wanted, cursor, lambda n: f"${n}")
        sql = (f"SELECT {DELIVERY_COLUMNS} FROM hp_delivery WHERE {where} "
               f"ORDER BY created_ms DESC, id DESC LIMIT {int(limit) + 1}")
        async with self._connection("listing deliveries") as db:
            rows = await db.fetch(sql, *params)
        return page_of([delivery_from_row(tuple(r)) for r in rows], limit)

    async def get_delivery(self, did: str) -> DeliveryHistory | None:
        created = created_ms(did)  # prunes every query to the delivery's one partition
        async with self._connection("reading a delivery") as db:
            row = await db.fetchrow(
                f"SELECT {DELIVERY_COLUMNS}, version FROM hp_delivery WHERE created_ms = $1 AND id = $2", created, did)
            if row is None:
                return None
            attempts = await db.fetch("SELECT number, record FROM hp_attempt WHERE delivery_created_ms = $1 "
                                      "AND delivery_id = $2 ORDER BY number", created, did)
            actions = await db.fetch("SELECT action FROM hp_action WHERE delivery_created_ms = $1 "
                                     "AND delivery_id = $2 ORDER BY seq", created, did)
        return DeliveryHistory(
            delivery_from_row(tuple(row)[:-1]),
            [attempt_json(did, r["number"], r["record"]) for r in attempts],
            [json.loads(r["action"]) for r in actions],
            int(row["version"]),
        )

    async def get_message(self, mid: str) -> Message | None:
        async with self._connection("reading a message") as db:
            row = await db.fetchrow("SELECT event_type, payload, trace, delivery_ids, accepted_ms FROM hp_message "
                                    "WHERE created_ms = $1 AND id = $2", created_ms(mid), mid)
        return None if row is None else message_from_row(mid, tuple(row))

    async def endpoint_attempts(
        self, eid: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: list[Any] = [eid]
        after = ""
        if cursor is not None:
            after = " AND (recorded_ms, delivery_id, number) < ($2, $3, $4)"
            params += list(decode_attempt_cursor(cursor))
        sql = (f"SELECT delivery_id, number, recorded_ms, record FROM hp_attempt WHERE endpoint_id = $1{after} "
               f"ORDER BY recorded_ms DESC, delivery_id DESC, number DESC LIMIT {int(limit) + 1}")
        async with self._connection("reading an attempt log") as db:
            rows = [tuple(r) for r in await db.fetch(sql, *params)]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_attempt_cursor(rows[-1][2], rows[-1][0], rows[-1][1]) if more else None
        return [attempt_json(did, n, record) for did, n, _at, record in rows], next_cursor

    async def daily_counts(self, eid: str, *, since_ms: int, until_ms: int) -> list[DailyCount]:
        sql = ("SELECT created_ms - created_ms % 86400000 AS day, status, count(*) FROM hp_delivery "
               "WHERE endpoint_id = $1 AND created_ms >= $2 AND created_ms < $3 GROUP BY day, status "
               "ORDER BY day, status")
        async with self._connection("counting") as db:
            rows = await db.fetch(sql, eid, since_ms, until_ms)
        return [DailyCount(int(r[0]), r[1], int(r[2])) for r in rows]

    async def sweep(self, *, cutoff_ms: int, now_ms: int) -> dict[tuple[str, str], int]:
        """Create partitions a week ahead; detach and drop each day that ended before `cutoff_ms`,
        unless a pending, retrying or delivering delivery is still in it (then the day waits)."""
        removed: dict[tuple[str, str], int] = {}
        async with self._connection("the retention sweep") as db:
            await self._ensure_days(db, range(-1, PREMAKE_DAYS + 1))
            days = await db.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'hp_delivery' ORDER BY c.relname")
            for (name,) in days:
                day = int(datetime.strptime(name[-8:], "%Y%m%d").replace(tzinfo=UTC).timestamp() * 1000)
                if day + DAY_MS > cutoff_ms:
                    continue
                live = await db.fetchval(f"SELECT count(*) FROM {name} WHERE status <> ALL($1::text[])",
                                         list(TERMINAL_STATUSES))
                if live:
                    continue
                counts = await db.fetch(f"SELECT endpoint_id, status, count(*) FROM {name} GROUP BY 1, 2")
                async with db.transaction():
                    await db.execute("SET LOCAL lock_timeout = '2s'")
                    for table in PARTITIONED:
                        child = partition_name(table, day)
                        await db.execute(f"ALTER TABLE {table} DETACH PARTITION {child}")
                        await db.execute(f"DROP TABLE {child}")
                self._known_days.discard(day)
                for eid, status, n in counts:
                    removed[(eid, status)] = removed.get((eid, status), 0) + int(n)
        return removed


async def _insert_rows(db: asyncpg.Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Run one of the unnest statements above with `rows` turned into one array per column."""
    if rows:
        await db.execute(statement, *(list(column) for column in zip(*rows, strict=True)))
