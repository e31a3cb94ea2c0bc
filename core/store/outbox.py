"""The history outbox: the stream hp:log that the Lua scripts append to in the same atomic step as
each state change, read by the history writers through one consumer group.

An entry is deleted once its records are committed to the history store (XACK + XDEL), so the
stream's length is the backlog and its first entry the oldest record not yet on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from core import keys
from core.clock import now_ms
from core.store.connection import Redis, load_script

GROUP = "history"
# A writer that has held entries this long without acknowledging them is presumed dead. Taking over
# a live but slow writer's batch is harmless (writes are idempotent; the second XACK is a no-op).
CLAIM_IDLE_MS = 10_000

Entry = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    length: int
    oldest_age_seconds: float | None


class OutboxStore:
    def __init__(self, client: Redis, *, claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
        self._redis = client
        self._claim_idle_ms = claim_idle_ms
        self._forget = load_script(client, "forget")

    async def ensure_group(self) -> None:
        try:
            # From the stream's start: records written before any writer ever ran are drained too.
            await self._redis.xgroup_create(keys.HISTORY_OUTBOX, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, *, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` entries for this writer: first its own unacknowledged ones (a restart), then
        a dead writer's (idle over `claim_idle_ms`), else new ones, waiting at most `block_ms`."""
        own = await self._redis.xreadgroup(GROUP, consumer, {keys.HISTORY_OUTBOX: "0"}, count=count)
        entries = _entries(own)
        if entries:
            return entries
        _next, claimed, *_deleted = await self._redis.xautoclaim(
            keys.HISTORY_OUTBOX, GROUP, consumer, self._claim_idle_ms, start_id="0-0", count=count)
        claimed_entries = [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
        if claimed_entries:
            return claimed_entries
        fresh = await self._redis.xreadgroup(GROUP, consumer, {keys.HISTORY_OUTBOX: ">"}, count=count, block=block_ms)
        return _entries(fresh)

    async def acknowledge(self, entry_ids: list[str]) -> None:
        if not entry_ids:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(keys.HISTORY_OUTBOX, GROUP, *entry_ids)
        pipe.xdel(keys.HISTORY_OUTBOX, *entry_ids)
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
        pipe.xlen(keys.HISTORY_OUTBOX)
        pipe.xrange(keys.HISTORY_OUTBOX, "-", "+", count=1)
        length, first = await pipe.execute()
        if not first:
            return OutboxBacklog(int(length), None)
        oldest_ms = int(first[0][0].split("-", 1)[0])
        return OutboxBacklog(int(length), round(max(0, now_ms() - oldest_ms) / 1000, 3))


def _entries(reply: object) -> list[Entry]:
    # XREADGROUP answers [[stream, [(id, fields), ...]]] (or a dict under RESP3); None when nothing came.
    if not reply:
        return []
    streams: Any = reply.items() if isinstance(reply, dict) else reply
    out: list[Entry] = []
    for _stream, rows in streams:
        for entry_id, fields in rows:
            if fields:
                out.append((entry_id, fields))
    return out
