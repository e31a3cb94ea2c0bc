"""Conformance suite: every HistoryStore backend (SQLite, PostgreSQL) behaves the same. Each test
runs once per backend against a real database."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from core.errors import HistorySchemaTooNew
from core.history import ActionRecord, AttemptRecord, DeliveryState, HistoryBatch, HistoryStore, MessageRecord
from core.ids import lower_bound
from core.models import DeliveryFilter, DeliveryStatus
from tests.history_db import endpoint_attempt_ids, open_history

DAY = 86_400_000
EP_A = "ep_" + "a" * 26
EP_B = "ep_" + "b" * 26
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def state(did: str, *, eid: str = EP_A, status: str = "pending", version: int = 1, event_type: str = "order.paid",
          attempts: int = 0, last_error: str | None = None) -> DeliveryState:
    return DeliveryState(id=did, message_id="msg_" + did[4:30], endpoint_id=eid, event_type=event_type,
                         status=status, attempts=attempts, updated_ms=int(time.time() * 1000),
                         next_attempt_ms=None, last_code=None, last_error=last_error, version=version)


def dids_at(ms: int, count: int) -> list[str]:
    """`count` delivery ids of one message created at `ms` (same millisecond: ties broken by id)."""
    core = lower_bound("msg", ms)[4:] + "".join(random.choice(ALPHABET) for _ in range(16))
    return [f"dlv_{core}_{j}" for j in range(1, count + 1)]


async def write(history: HistoryStore, *states: DeliveryState) -> None:
    batch = HistoryBatch()
    for s in states:
        batch.add_delivery(s)
    await history.write(batch)


async def listed(history: HistoryStore, wanted: DeliveryFilter, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = await history.list_deliveries(wanted, limit=limit, cursor=cursor)
        assert len(page) <= limit
        ids += [d.id for d in page]
        if cursor is None:
            return ids


async def test_pages_are_newest_first_and_exact_across_ties_days_and_filters(history: HistoryStore) -> None:
    now = int(time.time() * 1000)
    old = dids_at(now - 3 * DAY, 3)  # another day: another PostgreSQL partition
    tied = dids_at(now, 12)  # one millisecond, ids _1.._12 (lexical order: _1, _10, _11, _12, _2 ...)
    on_b = dids_at(now + 1, 4)
    await write(history, *(state(d) for d in old + tied), *(state(d, eid=EP_B, event_type="user.created")
                                                              for d in on_b))
    await write(history, state(tied[0], status="failed", version=2), state(old[1], status="succeeded", version=2))
    every = sorted(old + tied + on_b, reverse=True)

    for limit in (1, 5, 50):
        assert await listed(history, DeliveryFilter(), limit) == every
    assert await listed(history, DeliveryFilter(endpoint_id=EP_B), 3) == sorted(on_b, reverse=True)
    assert await listed(history, DeliveryFilter(event_type="user.created"), 2) == sorted(on_b, reverse=True)
    done = frozenset({DeliveryStatus.FAILED, DeliveryStatus.SUCCEEDED})
    assert await listed(history, DeliveryFilter(statuses=done), 1) == sorted([tied[0], old[1]], reverse=True)
    assert await listed(history, DeliveryFilter(endpoint_id=EP_A, statuses=frozenset({DeliveryStatus.PENDING})),
                        4) == sorted([d for d in old + tied if d not in (tied[0], old[1])], reverse=True)
    assert await listed(history, DeliveryFilter(since_ms=now - DAY), 7) == sorted(tied + on_b, reverse=True)
    assert await listed(history, DeliveryFilter(until_ms=now - DAY), 7) == sorted(old, reverse=True)
    message = "msg_" + tied[0][4:30]
    assert await listed(history, DeliveryFilter(message_id=message), 5) == sorted(tied, reverse=True)
    # A cursor stays exact while newer deliveries arrive: they sort before it.
    first, cursor = await history.list_deliveries(DeliveryFilter(), limit=4, cursor=None)
    await write(history, *(state(d) for d in dids_at(now + 5, 3)))
    rest, _ = await history.list_deliveries(DeliveryFilter(), limit=100, cursor=cursor)
    assert [d.id for d in first + rest] == every



async def test_a_messages_deliveries_are_exactly_its_own_among_messages_of_the_same_millisecond(
    history: HistoryStore,
) -> None:
    # Found by the key's id range (no message_id index): messages of one millisecond whose ids
    # share the time part, and whose random parts sort next to each other, must not leak into it.
    now = int(time.time() * 1000)
    own = dids_at(now, 11)
    core = own[0][4:30]
    before, after = (f"dlv_{core[:-1]}{c}_1" for c in (chr(ord(core[-1]) - 1), chr(ord(core[-1]) + 1)))
    await write(history, *(state(d) for d in [*own, before, after]))
    assert await listed(history, DeliveryFilter(message_id="msg_" + core), 4) == sorted(own, reverse=True)

async def test_replayed_and_duplicated_records_never_move_a_delivery_backwards(history: HistoryStore) -> None:
    (did,) = dids_at(int(time.time() * 1000), 1)
    batch = HistoryBatch()
    batch.add_delivery(state(did, status="pending", version=1))
    batch.add_delivery(state(did, status="delivering", version=3, attempts=1))
    batch.add_delivery(state(did, status="retrying", version=2, attempts=1))  # older than what the batch holds
    assert len(batch.deliveries) == 1
    await history.write(batch)
    await history.write(batch)  # the same batch again (a writer died before acknowledging it)
    await write(history, state(did, status="pending", version=1))  # a stale record from elsewhere
    found = await history.get_delivery(did)
    assert found is not None
    assert (found.delivery.status, found.delivery.attempts) == (DeliveryStatus.DELIVERING, 1)
    await write(history, state(did, status="succeeded", version=4, attempts=1))
    found = await history.get_delivery(did)
    assert found is not None and found.delivery.status is DeliveryStatus.SUCCEEDED
    page, _ = await history.list_deliveries(DeliveryFilter(), limit=10, cursor=None)
    assert [d.id for d in page] == [did]


async def test_detail_has_attempts_and_actions_in_order_and_the_endpoint_log_pages(history: HistoryStore) -> None:
    now = int(time.time() * 1000)
    dids = dids_at(now, 3)
    batch = HistoryBatch()
    for i, did in enumerate(dids):
        batch.add_delivery(state(did, status="retrying", attempts=2, version=3))
        for n in (1, 2):
            record = json.dumps({"number": n, "outcome": "retry", "response": {"status": 500}})
            batch.add_attempt(AttemptRecord(did, EP_A, n, now + 10 * i + n, record))
    late = json.dumps({"number": 2, "outcome": "lost"})
    batch.add_attempt(AttemptRecord(dids[0], EP_A, 2, now - 1, late))  # older than the one kept
    batch.add_action(ActionRecord(dids[0], f"{now:013d}-{2:06d}", json.dumps({"what": "cancel"})))
    message = "msg_" + dids[0][4:30]
    payload = '{"amount":4200,"note":"caf\u00e9 \u2603"}'
    batch.add_message(MessageRecord(message, "order.paid", payload, now, "00-abc-def-01", ",".join(dids)))
    batch.add_action(ActionRecord(dids[0], f"{now:013d}-{1:06d}", json.dumps({"what": "retry"})))
    await history.write(batch)
    await history.write(batch)

    found = await history.get_delivery(dids[0])
    assert found is not None
    assert [(a["id"], a["number"], a["outcome"]) for a in found.attempts] == [
        (f"{dids[0]}.1", 1, "retry"), (f"{dids[0]}.2", 2, "retry")]
    assert all(a["delivery_id"] == dids[0] for a in found.attempts)
    assert [a["what"] for a in found.actions] == ["retry", "cancel"]
    assert await history.get_delivery(dids_at(now, 1)[0]) is None
    stored = await history.get_message(message)
    assert stored is not None
    assert (stored.payload_json, stored.event_type, stored.trace, stored.delivery_ids, stored.created_at_ms) == (
        payload, "order.paid", "00-abc-def-01", tuple(dids), now)
    assert await history.get_message("msg_" + dids_at(now, 1)[0][4:30]) is None

    seen = await endpoint_attempt_ids(history, EP_A, page_size=4)
    expected = sorted(((now + 10 * i + n, f"{d}.{n}") for i, d in enumerate(dids) for n in (1, 2)), reverse=True)
    assert seen == [aid for _at, aid in expected]
    assert await history.endpoint_attempts(EP_B, limit=5, cursor=None) == ([], None)


async def test_daily_counts_group_by_creation_day_and_status(history: HistoryStore) -> None:
    today = int(time.time() * 1000) // DAY * DAY
    yesterday = dids_at(today - DAY + 5, 3)
    now = dids_at(today + 5, 2)
    await write(history, *(state(d, status="succeeded") for d in yesterday[:2]), state(yesterday[2], status="failed"),
                *(state(d) for d in now), state(dids_at(today + 6, 1)[0], eid=EP_B))
    counts = await history.daily_counts(EP_A, since_ms=today - DAY, until_ms=today + DAY)
    assert [(c.day_start_ms, c.status, c.deliveries) for c in counts] == [
        (today - DAY, "failed", 1), (today - DAY, "succeeded", 2), (today, "pending", 2)]


async def test_retention_removes_old_terminal_deliveries_and_never_a_queued_one(history: HistoryStore) -> None:
    now = int(time.time() * 1000)
    ten_days_ago = (now - 10 * DAY) // DAY * DAY + 1000
    old_done = dids_at(ten_days_ago, 3)
    old_waiting = dids_at(now - 9 * DAY, 2)  # its day holds only queued deliveries
    recent = dids_at(now - DAY, 2)
    batch = HistoryBatch()
    old_message = "msg_" + old_done[0][4:30]
    batch.add_message(MessageRecord(old_message, "order.paid", '{"n":1}', ten_days_ago, "", ",".join(old_done)))
    waiting_message = "msg_" + old_waiting[0][4:30]
    batch.add_message(MessageRecord(waiting_message, "order.paid", "{}", ten_days_ago, "", ",".join(old_waiting)))
    for did in old_done:
        batch.add_delivery(state(did, status="succeeded", attempts=1))
        batch.add_attempt(AttemptRecord(did, EP_A, 1, ten_days_ago, json.dumps({"number": 1})))
    batch.add_delivery(state(old_waiting[0], status="retrying"))
    batch.add_delivery(state(old_waiting[1], status="pending"))
    for did in recent:
        batch.add_delivery(state(did, status="failed"))
    await history.write(batch)

    removed = await history.sweep(cutoff_ms=now - 5 * DAY, now_ms=now)
    assert removed == {(EP_A, "succeeded"): 3}
    left = await listed(history, DeliveryFilter(), 50)
    assert left == sorted(old_waiting + recent, reverse=True)
    assert await history.get_delivery(old_done[0]) is None
    assert await history.get_message(old_message) is None  # it went with its last delivery
    assert await history.get_message(waiting_message) is not None
    assert await history.endpoint_attempts(EP_A, limit=10, cursor=None) == ([], None)
    # Deliveries written after the sweep still find their (re-created) storage.
    await write(history, state(dids_at(ten_days_ago + 7, 1)[0], status="failed"))
    assert await history.sweep(cutoff_ms=now - 5 * DAY, now_ms=now) == {(EP_A, "failed"): 1}


async def test_processes_starting_together_migrate_once_and_newer_schemas_are_refused(history_url: str) -> None:
    stores = [open_history(history_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()
    store = open_history(history_url)
    await store.open()
    (did,) = dids_at(int(time.time() * 1000), 1)
    await write(store, state(did))
    await store.close()

    await _record_future_version(history_url)
    newer = open_history(history_url)
    with pytest.raises(HistorySchemaTooNew, match="newer hookpump"):
        await newer.open()
    await newer.close()


async def _record_future_version(url: str) -> None:
    if url.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///"):]) as db:
            db.execute("INSERT INTO hp_schema_migrations VALUES (9999, 'from_the_future', 0)")
            assert db.execute("SELECT count(*) FROM hp_schema_migrations WHERE version = 1").fetchone() == (1,)
        return
    from core.history.postgres import admin

    assert await admin.fetch(url, "SELECT count(*) FROM hp_schema_migrations WHERE version = 1") == [(1,)]
    await admin.execute(url, "INSERT INTO hp_schema_migrations VALUES (9999, 'from_the_future', 0)")
