"""Deliveries, read side: one delivery or many by id, from the hp:dlv:{did} hashes.

Writes happen only in the Lua scripts (ingest, claim, complete, reap), which keep the indexes and
counters in step; this module never writes.
"""

from __future__ import annotations

from core import keys
from core.errors import NotFound
from core.ids import created_ms, message_id_of
from core.models import Delivery, DeliveryStatus
from core.store.connection import Redis

# The hash fields a Delivery is built from (see core/keys.py for the whole layout). The rest is not
# stored with it: the id says its message and creation time, the message its event type.
FIELDS = ["eid", "status", "attempts", "updated_ms", "due_ms", "last_code", "last_error"]
# The most in-flight deliveries one read returns: far above any likely sum of worker concurrency.
IN_FLIGHT_READ_MAX = 10_000


class DeliveryStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client

    async def get(self, did: str) -> Delivery:
        found = await self.get_many([did])
        if not found:
            raise NotFound("delivery", did)
        return found[0]

    async def in_flight(self, endpoint_id: str | None = None, *, most: int = IN_FLIGHT_READ_MAX) -> list[Delivery]:
        """The deliveries being sent now (status delivering), of one endpoint or of all, at most `most`
        of them (the ones whose leases end first). There are at most as many as the workers' summed
        concurrency, so this is a short read."""
        key = keys.inflight(endpoint_id) if endpoint_id is not None else keys.LEASES
        dids = await self._redis.zrange(key, 0, most - 1)
        return [d for d in await self.get_many(list(dids)) if d.status is DeliveryStatus.DELIVERING]

    async def get_many(self, dids: list[str]) -> list[Delivery]:
        """The deliveries that still exist, in the order asked; one round trip. Ids the retention
        sweep has already removed are left out rather than raising."""
        if not dids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for did in dids:
            pipe.hmget(keys.delivery(did), FIELDS)
            pipe.hget(keys.message(message_id_of(did)), "event_type")
        replies = await pipe.execute()
        rows = zip(dids, replies[0::2], replies[1::2], strict=True)
        return [_from_row(did, row, event_type) for did, row, event_type in rows if row[0] is not None]


def _from_row(did: str, row: list[str | None], event_type: str | None) -> Delivery:
    eid, status, attempts, updated, due, last_code, last_error = row
    return Delivery(
        id=did,
        message_id=message_id_of(did),
        endpoint_id=eid or "",
        event_type=event_type or "",
        status=DeliveryStatus(str(status)),
        attempts=int(attempts or 0),
        created_at_ms=created_ms(did),
        updated_at_ms=int(updated or 0),
        # Terminal deliveries have no due_ms (they are due nowhere).
        next_attempt_at_ms=int(float(due)) if due else None,
        last_status_code=int(last_code) if last_code else None,
        last_error=last_error or None,
    )
