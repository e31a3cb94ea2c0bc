"""The delivery log as the API and the console show it: the history store answers, and a delivery
still in Redis (live, or terminal and not yet forgotten) shows its state from Redis, which is the
authority for it. Function names and signatures are those MonitoringStore had, so callers move over
by changing the object they ask."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.history.protocol import DeliveryHistory, HistoryStore
from core.models import Delivery, DeliveryFilter
from core.store import Store


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
