"""The SQLite history store: the embedded default (one host). The only importer of `sqlite3`.

One writer connection on one thread (SQLite allows one writer at a time; a thread of our own keeps
the event loop free), one reader connection on another, WAL so reads never wait for the writer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.errors import HistoryRecordRejected, HistoryUnavailable
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
from core.ids import delivery_id_bounds, message_id_of
from core.models import Delivery, DeliveryFilter, Message

T = TypeVar("T")
SWEEP_BATCH = 5000
BUSY_TIMEOUT_SECONDS = 10.0

UPSERT_DELIVERY = f"""
INSERT INTO hp_delivery (created_ms, {DELIVERY_COLUMNS}, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
  updated_ms = excluded.updated_ms, next_attempt_ms = excluded.next_attempt_ms, last_code = excluded.last_code,
  last_error = excluded.last_error, version = excluded.version
WHERE excluded.version > hp_delivery.version
"""
UPSERT_ATTEMPT = """
INSERT INTO hp_attempt (delivery_id, number, endpoint_id, recorded_ms, record, cut_reason) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (delivery_id, number) DO UPDATE SET recorded_ms = excluded.recorded_ms, record = excluded.record,
  cut_reason = excluded.cut_reason
WHERE excluded.recorded_ms >= hp_attempt.recorded_ms
"""
INSERT_MESSAGE = """
INSERT INTO hp_message (id, created_ms, event_type, payload, trace, delivery_ids, accepted_ms)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
"""
INSERT_ACTION = "INSERT INTO hp_action (delivery_id, seq, action) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"


def _translate(exc: Exception, what: str) -> Exception:
    """sqlite3's exceptions as ours: content problems are the record's fault, the rest the database's."""
    if isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError | UnicodeEncodeError | OverflowError):
        return HistoryRecordRejected(f"SQLite refused {what}: {exc}")
    if isinstance(exc, sqlite3.OperationalError) and "too big" in str(exc):
        return HistoryRecordRejected(f"SQLite refused {what}: {exc}")
    return HistoryUnavailable(f"SQLite history store failed during {what}: {exc}")


class SqliteHistory:
    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-sqlite-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-sqlite-reader")
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteHistory({self.path!r})"

    async def _run(self, pool: ThreadPoolExecutor, what: str, work: Callable[[], T]) -> T:
        def guarded() -> T:
            try:
                return work()
            except (sqlite3.Error, UnicodeEncodeError, OverflowError) as exc:
                raise _translate(exc, what) from exc

        return await asyncio.get_running_loop().run_in_executor(pool, guarded)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

        def setup() -> None:
            # Switching to WAL and migrating take locks that SQLite's busy timeout does not always wait
            # for (a journal-mode change fails at once while another process migrates): retry.
            deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
            while True:
                try:
                    self._write_db = self._connect()
                    self._migrate(self._write_db)
                    break
                except sqlite3.OperationalError as exc:
                    if self._write_db is not None:
                        self._write_db.close()
                        self._write_db = None
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._read_db = self._connect()

        await self._run(self._writer, "opening the database", setup)

    def _migrate(self, db: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock first: a second process starting now waits here, then
        # finds everything applied.
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(migrations.LEDGER)
            applied = {row[0] for row in db.execute("SELECT version FROM hp_schema_migrations")}
            for migration in migrations.pending(migrations.migrations_of(__name__), applied, self.path):
                for statement in migration.statements():
                    db.execute(statement)
                db.execute("INSERT INTO hp_schema_migrations VALUES (?, ?, ?)",
                           (migration.version, migration.name, int(time.time() * 1000)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        for pool, db in ((self._writer, self._write_db), (self._reader, self._read_db)):
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(pool, db.close)
            pool.shutdown(wait=True)
        self._write_db = self._read_db = None

    async def ping(self) -> None:
        await self._read(lambda db: db.execute("SELECT 1").fetchone(), "a ping")

    async def _read(self, query: Callable[[sqlite3.Connection], T], what: str) -> T:
        db = self._read_db
        if db is None:
            raise HistoryUnavailable("the SQLite history store is not open")
        return await self._run(self._reader, what, lambda: query(db))

    async def write(self, batch: HistoryBatch) -> None:
        db = self._write_db
        if db is None:
            raise HistoryUnavailable("the SQLite history store is not open")

        def transaction() -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(INSERT_MESSAGE, [
                    (m.id, m.partition_ms, m.event_type, m.payload_json, m.trace, m.delivery_ids, m.created_ms)
                    for m in batch.messages.values()])
                db.executemany(UPSERT_DELIVERY, [
                    (d.created_ms, d.id, d.message_id, d.endpoint_id, d.event_type, d.status, d.attempts,
                     d.updated_ms, d.next_attempt_ms, d.last_code, d.last_error, d.version)
                    for d in batch.deliveries.values()])
                db.executemany(UPSERT_ATTEMPT, [
                    (a.delivery_id, a.number, a.endpoint_id, a.recorded_ms, a.record_json, a.cut_reason)
                    for a in batch.attempts.values()])
                db.executemany(INSERT_ACTION, [(x.delivery_id, x.seq, x.action_json) for x in batch.actions.values()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(self._writer, f"writing {len(batch)} records", transaction)

    async def list_deliveries(
        self, wanted: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        where, params = delivery_where(wanted, cursor, lambda _n: "?")
        sql = (f"SELECT {DELIVERY_COLUMNS} FROM hp_delivery WHERE {where} "
               f"ORDER BY created_ms DESC, id DESC LIMIT {int(limit) + 1}")
        rows = await self._read(lambda db: db.execute(sql, params).fetchall(), "listing deliveries")
        return page_of([delivery_from_row(r) for r in rows], limit)

    async def get_delivery(self, did: str) -> DeliveryHistory | None:
        def query(db: sqlite3.Connection) -> tuple[Any, list[Any], list[Any]]:
            row = db.execute(f"SELECT {DELIVERY_COLUMNS}, version FROM hp_delivery WHERE id = ?", (did,)).fetchone()
            attempts = db.execute("SELECT number, record FROM hp_attempt WHERE delivery_id = ? ORDER BY number",
                                  (did,)).fetchall()
            actions = db.execute("SELECT action FROM hp_action WHERE delivery_id = ? ORDER BY seq", (did,)).fetchall()
            return row, attempts, actions

        row, attempts, actions = await self._read(query, "reading a delivery")
        if row is None:
            return None
        return DeliveryHistory(
            delivery_from_row(row[:-1]),
            [attempt_json(did, n, record) for n, record in attempts],
            [json.loads(a) for (a,) in actions],
            int(row[-1]),
        )

    async def get_message(self, mid: str) -> Message | None:
        sql = "SELECT event_type, payload, trace, delivery_ids, accepted_ms FROM hp_message WHERE id = ?"
        row = await self._read(lambda db: db.execute(sql, (mid,)).fetchone(), "reading a message")
        return None if row is None else message_from_row(mid, row)

    async def endpoint_attempts(
        self, eid: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: list[Any] = [eid]
        after = ""
        if cursor is not None:
            after = " AND (recorded_ms, delivery_id, number) < (?, ?, ?)"
            params += list(decode_attempt_cursor(cursor))
        sql = (f"SELECT delivery_id, number, recorded_ms, record FROM hp_attempt WHERE endpoint_id = ?{after} "
               f"ORDER BY recorded_ms DESC, delivery_id DESC, number DESC LIMIT {int(limit) + 1}")
        rows = await self._read(lambda db: db.execute(sql, params).fetchall(), "reading an attempt log")
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_attempt_cursor(rows[-1][2], rows[-1][0], rows[-1][1]) if more else None
        return [attempt_json(did, n, record) for did, n, _at, record in rows], next_cursor

    async def daily_counts(self, eid: str, *, since_ms: int, until_ms: int) -> list[DailyCount]:
        sql = ("SELECT created_ms - created_ms % 86400000 AS day, status, count(*) FROM hp_delivery "
               "WHERE endpoint_id = ? AND created_ms >= ? AND created_ms < ? GROUP BY day, status ORDER BY day, status")
        rows = await self._read(lambda db: db.execute(sql, (eid, since_ms, until_ms)).fetchall(), "counting")
        return [DailyCount(day_start(int(day)), status, int(n)) for day, status, n in rows]

    async def sweep(self, *, cutoff_ms: int, now_ms: int) -> dict[tuple[str, str], int]:
        """Bounded batched deletes: each transaction removes at most SWEEP_BATCH deliveries, so the
        writer thread is never held for long."""
        db = self._write_db
        if db is None:
            raise HistoryUnavailable("the SQLite history store is not open")
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)

        def one_batch() -> list[tuple[str, str, str]]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT id, endpoint_id, status FROM hp_delivery WHERE created_ms < ? AND status IN ({marks}) "
                    f"LIMIT {SWEEP_BATCH}", (cutoff_ms, *TERMINAL_STATUSES)).fetchall()
                dids = [r[0] for r in rows]
                for table, column in (("hp_attempt", "delivery_id"), ("hp_action", "delivery_id"),
                                      ("hp_delivery", "id")):
                    db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(d,) for d in dids])
                # A message goes with its last delivery.
                mids = {message_id_of(d) for d in dids}
                db.executemany("DELETE FROM hp_message WHERE id = ? AND NOT EXISTS "
                               "(SELECT 1 FROM hp_delivery WHERE id > ? AND id < ?)",
                               [(m, *delivery_id_bounds(m)) for m in mids])
                db.execute("COMMIT")
                return rows
            except BaseException:
                db.execute("ROLLBACK")
                raise

        removed: dict[tuple[str, str], int] = {}
        while True:
            rows = await self._run(self._writer, "the retention sweep", one_batch)
            for _did, eid, status in rows:
                removed[(eid, status)] = removed.get((eid, status), 0) + 1
            if len(rows) < SWEEP_BATCH:
                return removed
