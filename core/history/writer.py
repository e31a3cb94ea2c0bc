"""The history writer: drains the Redis outbox (hp:log:<p>) into the history store, one batch at a time.

Each worker runs one. A batch is written in one transaction and acknowledged only after it commits,
so a writer killed mid-batch loses nothing (its entries stay pending and are re-read, by itself on
restart or by another writer after CLAIM_IDLE_MS) and doubles nothing (writes are idempotent
upserts). Once a terminal delivery's final state is committed, its Redis keys go (forget.lua).
While the database is down the writer waits and retries the same batch; the scripts keep
appending, so delivery never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from core.errors import HistoryRecordRejected, HistoryUnavailable, StoreUnavailable
from core.history.protocol import TERMINAL_STATUSES, HistoryStore
from core.history.records import (
    HistoryBatch,
    batch_from_entries,
    cut_action,
    cut_attempt,
    cut_delivery,
)
from core.store.outbox import OutboxStore

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
BLOCK_MS = 500
# A batch starts at most this often unless the last one was full: the records of the interval gather
# in one batch, so a delivery's pending and final states (when it is sent at once) are often written
# as one row version, and the database gets fewer, larger transactions. It adds at most this much to
# the outbox's delay (normally well under the second openapi.yaml promises).
GATHER_SECONDS = 0.1
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


@dataclass(slots=True)
class WriterCounts:
    written: int = 0  # records committed
    cut: int = 0  # records stored cut because the database refused their content
    dropped: int = 0  # records refused even when cut, or unreadable: logged, acknowledged, not stored
    failures: int = 0  # write attempts that found the database unavailable
    last_error: str | None = field(default=None)


class HistoryWriter:
    def __init__(self, outbox: OutboxStore, history: HistoryStore, *, consumer: str,
                 batch_size: int = BATCH_SIZE) -> None:
        self._outbox = outbox
        self._history = history
        self._consumer = consumer
        self._batch_size = batch_size
        self.counts = WriterCounts()

    async def run(self) -> None:
        """Until cancelled. One broad `except` here: a failure logs and the loop carries on."""
        await self._outbox.ensure_group()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                settled = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("history writer %s: unexpected failure; retrying in 1 s", self._consumer)
                await asyncio.sleep(1.0)
                continue
            if 0 < settled < self._batch_size:
                await asyncio.sleep(max(0.0, started + GATHER_SECONDS - loop.time()))

    async def drain_once(self, block_ms: int = BLOCK_MS) -> int:
        """Read, write and acknowledge one batch; returns how many outbox entries it settled."""
        try:
            entries = await self._outbox.read(self._consumer, count=self._batch_size, block_ms=block_ms)
        except StoreUnavailable:
            await asyncio.sleep(1.0)
            return 0
        if not entries:
            return 0
        batch, unreadable = batch_from_entries([(entry.id, entry.fields) for entry in entries])
        for entry_id in unreadable:
            logger.error("history writer: outbox entry %s is not a record this version understands; skipped", entry_id)
        self.counts.dropped += len(unreadable)
        await self._write_until_committed(batch)
        # Before acknowledging: a writer dying here leaves the entries pending, and the next one
        # re-writes them (idempotent) and forgets again, so no finished delivery stays in Redis.
        finished = {d.id: d.version for d in batch.deliveries.values() if d.status in TERMINAL_STATUSES}
        await self._outbox.forget_finished(finished)
        await self._outbox.acknowledge(entries)
        return len(entries)

    async def _write_until_committed(self, batch: HistoryBatch) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                await self._history.write(batch)
                self.counts.written += len(batch)
                return
            except HistoryUnavailable as exc:
                self.counts.failures += 1
                if self.counts.last_error != str(exc):
                    logger.warning("history store unavailable (%s); the outbox keeps the records, retrying", exc)
                self.counts.last_error = str(exc)
            except HistoryRecordRejected as exc:
                logger.warning("history store refused a batch of %d records (%s); writing them one by one",
                               len(batch), exc)
                if await self._write_singly(batch):
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _write_singly(self, batch: HistoryBatch) -> bool:
        """Write each record alone; one the database refuses is stored cut with the reason, or, if
        even that is refused, logged and left out. False if the database went away meanwhile."""
        singles = _single_records(batch)
        try:
            for single in singles:
                try:
                    await self._history.write(single)
                    self.counts.written += 1
                except HistoryRecordRejected as exc:
                    try:
                        await self._history.write(_cut(single, str(exc)))
                        self.counts.cut += 1
                        logger.warning("history record stored cut: %s", exc)
                    except HistoryRecordRejected as again:
                        self.counts.dropped += 1
                        logger.error("history record refused even when cut, left out: %s", again)
        except HistoryUnavailable as exc:
            self.counts.failures += 1
            self.counts.last_error = str(exc)
            return False
        return True


def _single_records(batch: HistoryBatch) -> list[HistoryBatch]:
    """One batch per record, messages and deliveries first."""
    return ([HistoryBatch(messages={k: v}) for k, v in batch.messages.items()]
            + [HistoryBatch(deliveries={k: v}) for k, v in batch.deliveries.items()]
            + [HistoryBatch(attempts={k: v}) for k, v in batch.attempts.items()]
            + [HistoryBatch(actions={k: v}) for k, v in batch.actions.items()])


def _cut(single: HistoryBatch, reason: str) -> HistoryBatch:
    """The one record of `single`, cut down with the reason the database gave."""
    return HistoryBatch(
        deliveries={k: cut_delivery(v, reason) for k, v in single.deliveries.items()},
        attempts={k: cut_attempt(v, reason) for k, v in single.attempts.items()},
        actions={k: cut_action(v, reason) for k, v in single.actions.items()},
        # A message is its payload: one the database refuses cannot be cut to something sendable.
        messages={},
    )
