"""Operator actions: manual retry and cancel of deliveries, pause and resume of endpoints, bulk
retry progress, restoring forgotten deliveries for a retry, and the counters the retention sweep
lowers. Each action is recorded on what it touched (in the history outbox)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core import keys
from core.clock import now_ms
from core.errors import NotFound
from core.models import iso
from core.store.connection import Redis, hgetall, load_script, typed

BULK_TTL_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: the API key's id (and name), for the action records."""

    key_id: str
    name: str = ""


class OperationsStore:
    def __init__(self, client: Redis, *, retention: float) -> None:
        self._redis = client
        self._retry = load_script(client, "retry")
        self._cancel = load_script(client, "cancel")
        self._pause = load_script(client, "pause")
        self._restore = load_script(client, "restore")
        self._retention_ms = int(retention * 1000)

    async def retry(self, dids: list[str], actor: Actor, *, via: str = "retry", hasten: bool = False) -> list[str]:
        """Per did: "queued", "hastened", "already_queued", "missing" or "message_gone" (see retry.lua).
        `hasten`: a delivery waiting for its next automatic attempt is made due now ("try now")."""
        if not dids:
            return []
        now = now_ms()
        return list(await self._retry(args=[now, _action(via, actor, now), "1" if hasten else "0", *dids]))

    async def cancel(self, dids: list[str], actor: Actor) -> list[str]:
        """Per did: "cancelled", "delivering", "terminal" or "missing" (see cancel.lua)."""
        now = now_ms()
        return list(await self._cancel(args=[now, _action("cancel", actor, now), *dids]))

    async def pause_endpoint(self, eid: str, actor: Actor, until_ms: int | None) -> None:
        now = now_ms()
        action = _action("pause", actor, now, until=iso(until_ms) if until_ms else None)
        if not await self._pause(args=[eid, now, "pause", until_ms or 0, action]):
            raise NotFound("endpoint", eid)

    async def resume_endpoint(self, eid: str, actor: Actor) -> None:
        now = now_ms()
        if not await self._pause(args=[eid, now, "resume", 0, _action("resume", actor, now)]):
            raise NotFound("endpoint", eid)

    async def record_endpoint_action(self, eid: str, what: str, actor: Actor, **details: Any) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(keys.endpoint_actions(eid), _action(what, actor, now_ms(), **details))
        pipe.ltrim(keys.endpoint_actions(eid), 0, 99)
        await pipe.execute()

    async def restore(self, rows: list[dict[str, Any]]) -> list[str]:
        """Put forgotten terminal deliveries back from their history rows (see restore.lua), so a
        manual retry can queue them; returns the ids restored."""
        if not rows:
            return []
        return list(await self._restore(args=[json.dumps(rows)]))

    async def decrement_counts(self, removed: dict[tuple[str, str], int]) -> None:
        """The retention sweep removed these (endpoint, status) deliveries from the history store."""
        pipe = self._redis.pipeline(transaction=False)
        for (eid, status), n in removed.items():
            pipe.hincrby(keys.endpoint_counts(eid), status, -n)
            pipe.hincrby(keys.COUNTS, status, -n)
        await pipe.execute()

    async def start_bulk_retry(self, job_id: str, filter_json: dict[str, Any], actor: Actor) -> None:
        key = keys.bulk_retry(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "id": job_id,
                "state": "queued",
                "filter": json.dumps(filter_json),
                "matched": 0,
                "queued": 0,
                "skipped": 0,
                "created_ms": now_ms(),
                "by": actor.key_id,
                "cursor": "",
            },
        )
        pipe.expire(key, BULK_TTL_SECONDS)
        await pipe.execute()

    async def bulk_progress(self, job_id: str) -> dict[str, str]:
        raw = await hgetall(self._redis, keys.bulk_retry(job_id))
        if not raw:
            raise NotFound("bulk retry", job_id)
        return raw

    async def update_bulk(self, job_id: str, **fields: str | int) -> None:
        await typed(self._redis.hset(keys.bulk_retry(job_id), mapping=fields))

    async def add_bulk_counts(self, job_id: str, *, matched: int, queued: int, skipped: int, cursor: str) -> None:
        key = keys.bulk_retry(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(key, "matched", matched)
        pipe.hincrby(key, "queued", queued)
        pipe.hincrby(key, "skipped", skipped)
        pipe.hset(key, mapping={"cursor": cursor, "state": "running"})
        await pipe.execute()


def _action(what: str, actor: Actor, now: int, **details: Any) -> str:
    return json.dumps(
        {"action": what, "by": actor.key_id, "at": iso(now), **{k: v for k, v in details.items() if v is not None}}
    )
