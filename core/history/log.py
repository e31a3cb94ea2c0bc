"""The delivery log as the API and the console show it: the history store answers, and a delivery
still in Redis (live, or terminal and not yet forgotten) shows its state from Redis, which is the
authority for it. Function names and signatures are those MonitoringStore had, so callers move over
by changing the object they ask."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.history.protocol import DeliveryHistory, HistoryStore
from core.ids import created_ms
from core.models import Delivery, DeliveryFilter, Message
from core.store import Actor, Store


class DeliveryLog:
    def __init__(self, store: Store, history: HistoryStore) -> None:
        self._store = store
        self._history = history

    async def list_deliveries(
        self, wanted: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first, from the history store: eventually consistent with Redis (the outbox lag,
        normally under a second). `cursor` is the last id shown; None when no page follows."""
        return await self._history.list_deliveries(wanted, limit=limit, cursor=cursor)

    async def get_delivery(self, did: str) -> DeliveryHistory:
        """The delivery with its attempts and operator actions (oldest first). Its state comes from
        Redis while Redis still holds it; attempts and actions from the history store."""
        live = await self._store.deliveries.get_many([did])
        stored = await self._history.get_delivery(did)
        if live:
            if stored is None:
                return DeliveryHistory(live[0], [], [])
            return DeliveryHistory(live[0], stored.attempts, stored.actions)
        if stored is None:
            raise NotFound("delivery", did)
        return stored

    async def endpoint_attempts(
        self, eid: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The endpoint's attempts, most recently recorded first."""
        return await self._history.endpoint_attempts(eid, limit=limit, cursor=cursor)

    async def message_deliveries(self, message: Message) -> list[Delivery]:
        """A message's deliveries in its order: from Redis while it holds them, else from the history."""
        ids = list(message.delivery_ids)
        found = {d.id: d for d in await self._store.deliveries.get_many(ids)}
        if len(found) < len(ids):
            stored, _ = await self._history.list_deliveries(DeliveryFilter(message_id=message.id), limit=len(ids),
                                                            cursor=None)
            for delivery in stored:
                found.setdefault(delivery.id, delivery)
        return [found[did] for did in ids if did in found]

    async def retry(self, dids: list[str], actor: Actor, *, via: str = "retry") -> list[str]:
        """Manual retry (see OperationsStore.retry). A finished delivery Redis has forgotten is first
        restored from its history row, so it is "missing" only if neither store knows it."""
        ops = self._store.operations
        results = await ops.retry(dids, actor, via=via)
        missing = [did for did, result in zip(dids, results, strict=True) if result == "missing"]
        if not missing:
            return results
        rows = []
        for did in missing:
            stored = await self._history.get_delivery(did)
            if stored is not None:
                rows.append(_restorable(stored.delivery, stored.version))
        restored = await ops.restore(rows)
        again = dict(zip(restored, await ops.retry(restored, actor, via=via), strict=True))
        # Known to the history but not restorable: its message's payload has expired.
        known = {row["id"] for row in rows}
        return [again.get(did, "message_gone" if did in known else "missing") if result == "missing" else result
                for did, result in zip(dids, results, strict=True)]


def _restorable(delivery: Delivery, version: int) -> dict[str, Any]:
    return {
        "id": delivery.id, "mid": delivery.message_id, "eid": delivery.endpoint_id,
        "event_type": delivery.event_type, "status": delivery.status.value, "attempts": delivery.attempts,
        "created_ms": created_ms(delivery.id), "updated_ms": delivery.updated_at_ms,
        "last_code": "" if delivery.last_status_code is None else delivery.last_status_code,
        "last_error": delivery.last_error or "", "version": version,
    }
