"""The delivery log as the API and the console show it: the history store answers, and a delivery
still in Redis (live, or terminal and not yet forgotten) shows its state from Redis, which is the
authority for it. Function names and signatures are those MonitoringStore had, so callers move over
by changing the object they ask."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.history.protocol import DeliveryHistory, HistoryStore
from core.ids import created_ms
from core.models import TERMINAL, Delivery, DeliveryFilter, DeliveryStatus, Message
from core.store import Actor, Store


class DeliveryLog:
    def __init__(self, store: Store, history: HistoryStore) -> None:
        self._store = store
        self._history = history

    async def list_deliveries(
        self, wanted: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first. `cursor` is the last id shown; None when no page follows.

        The history store answers, eventually consistent with Redis (the outbox lag, normally under
        a second). Two things come from Redis instead, which is the authority for a live delivery:
        the state of every queued one on the page (the history has no record of its claim), and the
        deliveries being sent now. The history never records `delivering`: it lasts one request,
        and leaving it out of the outbox saves a record per attempt (BENCHMARKS.md). So a filter
        on `delivering` reads Redis's in-flight set and merges it into the history's page."""
        rows, more_after = await self._history.list_deliveries(wanted, limit=limit, cursor=cursor)
        rows = await self._live(rows, wanted)
        if DeliveryStatus.DELIVERING not in wanted.statuses:
            return rows, more_after  # with no status filter, the live states above show who is sending
        merged = {d.id: d for d in rows}
        for sending in await self._store.deliveries.in_flight(wanted.endpoint_id):
            if _matches(sending, wanted) and (cursor is None or _key(sending.id) < _key(cursor)):
                merged[sending.id] = sending
        ordered = sorted(merged.values(), key=lambda d: _key(d.id), reverse=True)
        if more_after is not None:
            # The history's page is complete only down to its last row; what is older waits for the next.
            ordered = [d for d in ordered if _key(d.id) >= _key(more_after)]
        if len(ordered) > limit:
            return ordered[:limit], ordered[limit - 1].id
        return ordered, more_after

    async def _live(self, rows: list[Delivery], wanted: DeliveryFilter) -> list[Delivery]:
        """The page with each queued row's state as Redis has it now; a row that no longer matches
        the status filter (it was claimed, or has ended) leaves the page."""
        queued = [d.id for d in rows if d.status not in TERMINAL]
        if not queued:
            return rows
        live = {d.id: d for d in await self._store.deliveries.get_many(queued)}
        rows = [live.get(d.id, d) for d in rows]
        if wanted.statuses:
            rows = [d for d in rows if d.status in wanted.statuses]
        return rows

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


def _key(did: str) -> tuple[int, str]:
    """The log's order, newest first when reversed: creation time, then id."""
    return created_ms(did), did


def _matches(delivery: Delivery, wanted: DeliveryFilter) -> bool:
    """The filter in Python, for deliveries read from Redis (the history store applies it in SQL)."""
    return (
        (wanted.endpoint_id is None or delivery.endpoint_id == wanted.endpoint_id)
        and (not wanted.statuses or delivery.status in wanted.statuses)
        and (wanted.event_type is None or delivery.event_type == wanted.event_type)
        and (wanted.message_id is None or delivery.message_id == wanted.message_id)
        and (wanted.since_ms is None or delivery.created_at_ms >= wanted.since_ms)
        and (wanted.until_ms is None or delivery.created_at_ms <= wanted.until_ms)
    )


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
