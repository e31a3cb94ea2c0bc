"""The history outbox: the streams hp:log:<p> that the Lua scripts append to in the same atomic step
as each state change (one per endpoint partition, see core/keys.py), read by the history writers
through one consumer group per stream.

An entry is deleted once its records are committed to the history store (XACK + XDEL), so the
streams' summed length is the backlog and their first entries the oldest records not yet on disk.
Every call covers all the streams in one round trip (several streams per XREADGROUP, pipelines for
the rest); on Redis Cluster they would be one call per stream, as each stream may live on another
node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.exceptions import ResponseError

from core import keys
from core.clock import now_ms
from core.store.connection import Redis, load_script

GROUP = "history"
# A writer that has held entries this long without acknowledging them is presumed dead. Taking over
# a live but slow writer's batch is harmless (writes are idempotent; the second XACK is a no-op).
CLAIM_IDLE_MS = 10_000


class OutboxEntry(NamedTuple):
    stream: str
    id: str  # the entry id in its stream ("<ms>-<n>"): unique within the stream only
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    length: int
    oldest_age_seconds: float | None


class OutboxStore:
    def __init__(self, client: Redis, *, claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
        self._redis = client
        self._claim_idle_ms = claim_idle_ms
        self._next_claim_ms = 0
        self._forget = load_script(client, "forget")

    async def ensure_group(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for stream in keys.OUTBOX_STREAMS:
            # From the stream's start: records written before any writer ever ran are drained too.
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and not (isinstance(reply, ResponseError) and "BUSYGROUP" in str(reply)):
                raise reply

    async def read(self, consumer: str, *, count: int, block_ms: int) -> list[OutboxEntry]:
        """Up to `count` entries per stream for this writer: first its own unacknowledged ones (a
        restart), then a dead writer's (idle over `claim_idle_ms`), else new ones, waiting at most
        `block_ms`."""
        own = await self._redis.xreadgroup(GROUP, consumer, dict.fromkeys(keys.OUTBOX_STREAMS, "0"), count=count)
        entries = _entries(own)
        if entries:
            return entries
        if now_ms() >= self._next_claim_ms:
            # A dead writer's entries wait at least claim_idle_ms anyway: looking twice per that
            # period is enough, and spares every batch one XAUTOCLAIM per stream.
            self._next_claim_ms = now_ms() + self._claim_idle_ms // 2
            claimed = await self._claim_idle(consumer, count)
            if claimed:
                self._next_claim_ms = 0  # there may be more: look again on the next read
                return claimed
        fresh = await self._redis.xreadgroup(
            GROUP, consumer, dict.fromkeys(keys.OUTBOX_STREAMS, ">"), count=count, block=block_ms)
        return _entries(fresh)

    async def _claim_idle(self, consumer: str, count: int) -> list[OutboxEntry]:
        pipe = self._redis.pipeline(transaction=False)
        for stream in keys.OUTBOX_STREAMS:
            pipe.xautoclaim(stream, GROUP, consumer, self._claim_idle_ms, start_id="0-0", count=count)
        return [
            OutboxEntry(stream, entry_id, fields)
            for stream, (_next, rows, *_deleted) in zip(keys.OUTBOX_STREAMS, await pipe.execute(), strict=True)
            for entry_id, fields in rows
            if fields is not None
        ]

    async def acknowledge(self, entries: list[OutboxEntry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
        if not by_stream:
            return
        pipe = self._redis.pipeline(transaction=True)
        for stream, entry_ids in by_stream.items():
            pipe.xack(stream, GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
        await pipe.execute()

    async def forget_finished(self, committed: dict[str, int]) -> int:
        """Remove the Redis keys of terminal deliveries whose state at these versions (did -> version)
        is committed to the history store; returns how many went (see forget.lua)."""
        if not committed:
            return 0
        args: list[object] = []
        for did, version in committed.items():
            args += [did, version]
        return int(await self._forget(args=args))

    async def backlog(self) -> OutboxBacklog:
        pipe = self._redis.pipeline(transaction=False)
        for stream in keys.OUTBOX_STREAMS:
            pipe.xlen(stream)
            pipe.xrange(stream, "-", "+", count=1)
        replies = await pipe.execute()
        length = sum(int(n) for n in replies[0::2])
        firsts = [int(first[0][0].split("-", 1)[0]) for first in replies[1::2] if first]
        if not firsts:
            return OutboxBacklog(length, None)
        return OutboxBacklog(length, round(max(0, now_ms() - min(firsts)) / 1000, 3))


def _entries(reply: object) -> list[OutboxEntry]:
    # XREADGROUP answers [[stream, [(id, fields), ...]], ...] (or a dict under RESP3); None when nothing came.
    if not reply:
        return []
    streams: Any = reply.items() if isinstance(reply, dict) else reply
    return [OutboxEntry(stream, entry_id, fields) for stream, rows in streams for entry_id, fields in rows if fields]
