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

    async def get_message(self, mid: str) -> Message:
        """The message from Redis while a delivery of it is there, else from the history store."""
        try:
            return await self._store.messages.get(mid)
        except NotFound:
            stored = await self._history.get_message(mid)
            if stored is None:
                raise
            return stored

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

    async def retry(self, dids: list[str], actor: Actor, *, via: str = "retry", hasten: bool = False) -> list[str]:
        """Manual retry (see OperationsStore.retry). A finished delivery Redis has forgotten is first
        restored from its history row, so it is "missing" only if neither store knows it."""
        ops = self._store.operations
        results = await ops.retry(dids, actor, via=via, hasten=hasten)
        missing = [did for did, result in zip(dids, results, strict=True) if result == "missing"]
        if not missing:
            return results
        rows = []
        for did in missing:
            stored = await self._history.get_delivery(did)
            if stored is not None:
                message = await self._history.get_message(stored.delivery.message_id)
                rows.append(_restorable(stored.delivery, stored.version, message))
        restored = await ops.restore(rows)
        again = dict(zip(restored, await ops.retry(restored, actor, via=via, hasten=hasten), strict=True))
        # Known to the history but not restorable: its message's payload has expired.
        known = {row["id"] for row in rows}
        return [again.get(did, "message_gone" if did in known else "missing") if result == "missing" else result
                for did, result in zip(dids, results, strict=True)]


def _restorable(delivery: Delivery, version: int, message: Message | None) -> dict[str, Any]:
    """restore.lua's row: the delivery, and its message for when Redis no longer has it (absent when
    retention has removed the message: nothing to send, the retry answers "message_gone")."""
    row: dict[str, Any] = {
        "id": delivery.id, "mid": delivery.message_id, "eid": delivery.endpoint_id,
        "event_type": delivery.event_type, "status": delivery.status.value, "attempts": delivery.attempts,
        "created_ms": created_ms(delivery.id), "updated_ms": delivery.updated_at_ms,
        "last_code": "" if delivery.last_status_code is None else delivery.last_status_code,
        "last_error": delivery.last_error or "", "version": version,
    }
    if message is not None:
        row["message"] = {"event_type": message.event_type, "payload": message.payload_json,
                          "created_ms": message.created_at_ms, "trace": message.trace,
                          "deliveries": ",".join(message.delivery_ids)}
    return row
