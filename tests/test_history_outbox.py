"""The outbox: every state change reaches the history store through hp:log, with a real worker and
receiver, on both backends; a writer that dies mid-batch loses and doubles nothing; a record the
database refuses is stored cut; PostgreSQL going away for 10 s mid-run stops no delivery and loses or
doubles no history."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from core import keys
from core.history import HistoryStore
from core.history.writer import HistoryWriter
from core.ids import message_id_of
from core.models import DeliveryFilter, DeliveryStatus
from core.settings import Settings
from core.store import Actor, NewMessage, OutboxStore, Store
from tests.history_db import caught_up, endpoint_attempt_ids, open_history
from tests.pumping import make_endpoint, running_worker, send, wait_until
from tests.receiver import Receiver, Reply
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def database_url(history_url: str) -> str:
    return history_url


async def everything(history: HistoryStore, **filters: object) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = await history.list_deliveries(DeliveryFilter(**filters), limit=200, cursor=cursor)  # type: ignore[arg-type]
        ids += [d.id for d in page]
        if cursor is None:
            return ids


async def test_a_real_run_lands_in_the_history_with_every_attempt_and_action(
    store: Store, settings: Settings, database_url: str
) -> None:
    # Every third request fails once with a 500: those deliveries have two attempts.
    receiver = await Receiver(lambda n, _r: Reply(500) if n % 3 == 0 else Reply(200)).start()
    history = open_history(database_url)
    await history.open()
    try:
        eid = await make_endpoint(store, receiver.url())
        held = await make_endpoint(store, receiver.url(), enabled=False)  # nothing is sent to it
        dids = await send(store, 24, endpoint_ids=[eid])
        queued = await send(store, 3, endpoint_ids=[held])
        assert await store.operations.cancel(queued[:2], Actor("key_ops")) == ["cancelled", "cancelled"]
        async with running_worker(settings):
            async def settled() -> bool:
                done = await history.list_deliveries(DeliveryFilter(statuses=frozenset({DeliveryStatus.SUCCEEDED})),
                                                     limit=100, cursor=None)
                return len(done[0]) == 24 and (await store.outbox.backlog()).length == 0
            await wait_until(settled)
        assert await everything(history) == sorted(dids + queued, reverse=True)
        assert await everything(history, statuses=frozenset({DeliveryStatus.CANCELLED})) == sorted(queued[:2],
                                                                                                    reverse=True)
        attempts_total = 0
        for did in dids:
            found = await history.get_delivery(did)
            assert found is not None and found.delivery.status is DeliveryStatus.SUCCEEDED
            numbers = [a["number"] for a in found.attempts]
            assert numbers == list(range(1, found.delivery.attempts + 1))
            assert found.attempts[-1]["outcome"] == "succeeded"
            assert found.attempts[-1]["response"]["status"] == 200
            attempts_total += len(numbers)
        assert attempts_total == len(receiver.received)  # every request sent is in the history, once
        logged, cursor = await history.endpoint_attempts(eid, limit=100, cursor=None)
        assert cursor is None and len(logged) == attempts_total
        cancelled = await history.get_delivery(queued[0])
        assert cancelled is not None and [(a["action"], a["by"]) for a in cancelled.actions] == [("cancel", "key_ops")]
    finally:
        await history.close()
        await receiver.stop()


async def test_a_writer_killed_mid_batch_loses_nothing_and_doubles_nothing(store: Store, database_url: str) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/never", enabled=False)
    dids = await send(store, 50, endpoint_ids=[eid])
    assert await store.operations.cancel(dids[:10], Actor("key_ops")) == ["cancelled"] * 10
    history = open_history(database_url)
    await history.open()
    try:
        outbox = OutboxStore(store.redis, claim_idle_ms=200)
        await outbox.ensure_group()
        # Writer A reads a batch, commits half of it... and dies before acknowledging anything.
        from core.history.records import batch_from_entries

        entries = await outbox.read("writer-a", count=40, block_ms=100)
        assert len(entries) == 40
        batch, _ = batch_from_entries([(entry.id, entry.fields) for entry in entries[:20]])
        await history.write(batch)
        later = await send(store, 5, endpoint_ids=[eid])  # more records arrive meanwhile
        await asyncio.sleep(0.3)  # A's entries are now idle past the claim time

        writer_b = HistoryWriter(outbox, history, consumer="writer-b", batch_size=7)
        while await writer_b.drain_once(block_ms=50):
            pass
        assert (await outbox.backlog()).length == 0
        assert await everything(history) == sorted(dids + later, reverse=True)
        cancelled = await everything(history, statuses=frozenset({DeliveryStatus.CANCELLED}))
        assert cancelled == sorted(dids[:10], reverse=True)
        for did in dids[:10]:
            found = await history.get_delivery(did)
            assert found is not None and len(found.actions) == 1  # not doubled by the replay
        for stream in keys.OUTBOX_STREAMS:
            assert (await store.redis.xpending(stream, "history"))["pending"] == 0
    finally:
        await history.close()


async def test_an_endpoints_records_go_to_its_outbox_partition_and_a_fanned_out_message_to_each(
    store: Store, settings: Settings, history: HistoryStore
) -> None:
    first = await make_endpoint(store, "http://127.0.0.1:9/never", enabled=False)
    second = first
    while keys.outbox_partition(second) == keys.outbox_partition(first):  # ids end in a random character
        second = await make_endpoint(store, "http://127.0.0.1:9/never", enabled=False)
    dids = await send(store, 1, endpoint_ids=[first, second])
    assert await store.operations.cancel(dids, Actor("key_ops")) == ["cancelled"] * 2

    used = {stream: await store.redis.xrange(stream) for stream in keys.OUTBOX_STREAMS}
    used = {stream: entries for stream, entries in used.items() if entries}
    assert set(used) == {keys.outbox(keys.outbox_partition(first)), keys.outbox(keys.outbox_partition(second))}
    for number, did in enumerate(dids, start=1):
        eid = (await store.deliveries.get(did)).endpoint_id
        partition = keys.outbox_partition(eid)
        entries = [fields for _id, fields in used[keys.outbox(partition)]]
        # The message's copy for this partition, then the cancel: the action, and the delivery's state
        # (appended when the script ends).
        assert [f["k"] for f in entries] == ["m", "x", "d"]
        # Each copy lists only its partition's delivery; the first endpoint's also carries the message.
        assert (entries[0]["j"], entries[0]["e"]) == (str(number), eid)
        assert ("p" in entries[0]) == (eid == first) and ("f" in entries[0]) == (eid == first)
        assert entries[1]["i"] == did and entries[2]["i"] == did

    await caught_up(store, settings)
    for did in dids:
        found = await history.get_delivery(did)
        assert found is not None and found.delivery.status is DeliveryStatus.CANCELLED
        assert len(found.actions) == 1
    message = await history.get_message(message_id_of(dids[0]))
    assert message is not None and message.delivery_ids == tuple(dids)


async def test_a_record_the_store_refuses_is_kept_cut_and_never_blocks_the_rest(
    store: Store, database_url: str
) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/never", enabled=False)
    (did,) = await send(store, 1, endpoint_ids=[eid])
    huge = json.dumps({"number": 1, "outcome": "retry", "response": {"body": "x" * 200_000}})
    # Written to the single outbox stream of earlier versions, which writers still drain.
    await store.redis.xadd(keys.LEGACY_OUTBOX, {"k": "a", "i": did, "e": eid, "n": 1, "t": 1, "r": huge})
    await store.redis.xadd(keys.LEGACY_OUTBOX, {"k": "d", "i": did, "m": "msg_" + did[4:30], "e": eid,
                                                "y": "order.paid", "s": "retrying", "n": 1, "u": 2, "w": "", "c": "",
                                                "x": "bad \x00 byte", "v": 99})
    (behind,) = await send(store, 1, endpoint_ids=[eid])
    history = open_history(database_url)
    await history.open()
    try:
        writer = HistoryWriter(store.outbox, history, consumer="w")
        await store.outbox.ensure_group()
        while await writer.drain_once(block_ms=50):
            pass
        assert (await store.outbox.backlog()).length == 0
        found = await history.get_delivery(did)
        assert found is not None
        assert found.delivery.status is DeliveryStatus.RETRYING and found.delivery.last_error is not None
        assert found.delivery.last_error.startswith("bad ")
        assert [a["error"]["kind"] for a in found.attempts] == ["record_cut"]
        assert "larger than" in found.attempts[0]["error"]["message"]
        assert await history.get_delivery(behind) is not None
    finally:
        await history.close()


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))


OUTAGE_SECONDS = 10.0


@pytest.mark.parametrize("history_backend", ["postgres"], indirect=True)
@pytest.mark.timeout(180)  # 10 s away, then the catch-up deadlines below (generous for a busy machine)
async def test_postgres_away_for_10_s_with_deliveries_flowing_sends_every_one_and_records_each_once(
    store: Store, settings: Settings, database_url: str
) -> None:
    parts = urlsplit(database_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    receiver = await Receiver().start()
    via_proxy = settings.replace(database_url=_through(proxy, database_url))
    history = open_history(database_url)  # the test's own view, not through the proxy
    await history.open()
    try:
        eid = await make_endpoint(store, receiver.url())
        async with running_worker(via_proxy):
            before = await send(store, 20, endpoint_ids=[eid])
            await wait_until(lambda: _count(history, 20))
            await proxy.cut()
            away_since = time.monotonic()
            during: list[str] = []
            while time.monotonic() - away_since < OUTAGE_SECONDS:  # messages keep arriving all the while
                during += await send(store, 5, endpoint_ids=[eid])
                await asyncio.sleep(0.5)
            # Every one was sent while the database was away (it stays away until they are).
            await wait_until(lambda: _received(receiver, 20 + len(during)), timeout=60)
            backlog = await store.outbox.backlog()
            assert backlog.length > 0 and backlog.oldest_age_seconds is not None
            assert len(await everything(history)) == 20
            await proxy.restore()
            everyone = before + during
            await wait_until(lambda: _count(history, len(everyone), succeeded=True), timeout=90)
        # Once it is back, the history holds every delivery once and its one attempt once.
        assert await everything(history) == sorted(everyone, reverse=True)
        for did in everyone:
            found = await history.get_delivery(did)
            assert found is not None and [a["number"] for a in found.attempts] == [1], did
        assert sorted(await endpoint_attempt_ids(history, eid)) == sorted(f"{did}.1" for did in everyone)
        sent = [r.headers["webhook-id"] for r in receiver.received]
        assert sorted(sent) == sorted("msg_" + did[4:30] for did in everyone)  # each sent, and once
    finally:
        await history.close()
        await receiver.stop()
        await proxy.stop()


async def _count(history: HistoryStore, n: int, *, succeeded: bool = False) -> bool:
    wanted = DeliveryFilter(statuses=frozenset({DeliveryStatus.SUCCEEDED})) if succeeded else DeliveryFilter()
    return len(await everything(history, **{"statuses": wanted.statuses})) == n


async def _received(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def test_a_finished_delivery_leaves_redis_and_comes_back_for_a_manual_retry(
    store: Store, settings: Settings
) -> None:
    from tests.api import ADMIN, api_client
    from tests.history_db import caught_up

    receiver = await Receiver().start()
    try:
        eid = await make_endpoint(store, receiver.url())
        payload = '{"amount":4200,"note":"caf\u00e9"}'
        accepted = await store.messages.ingest([NewMessage("order.paid", payload, [eid])])
        mid = accepted.messages[0]["id"]
        [did] = [d["id"] for d in accepted.messages[0]["deliveries"]]
        async with running_worker(settings):
            await wait_until(lambda: _received(receiver, 1))
            await caught_up(store, settings)
            # Redis keeps only live state: nothing of the finished delivery or its message is left.
            assert await store.redis.exists(f"hp:dlv:{did}", f"hp:msg:{mid}", f"hp:msg:{mid}:payload") == 0
            async with api_client(settings) as client:
                message = (await client.get(f"/v1/messages/{mid}", headers=ADMIN)).json()
                assert message["payload"] == json.loads(payload)
                assert [(d["id"], d["status"]) for d in message["deliveries"]] == [(did, "succeeded")]
                retried = await client.post(f"/v1/deliveries/{did}/retry", headers=ADMIN)
                assert retried.status_code == 202, retried.text
                assert retried.json()["status"] == "pending"
                await wait_until(lambda: _received(receiver, 2))
        first, second = receiver.received
        assert second.body == first.body == payload.encode()
        assert second.headers["webhook-id"] == first.headers["webhook-id"] == mid
    finally:
        await receiver.stop()


@pytest.mark.parametrize("history_backend", ["sqlite"], indirect=True)  # its own (unreachable) URL replaces it
async def test_with_the_database_unreachable_from_the_start_delivery_goes_on_and_readyz_says_degraded(
    store: Store, settings: Settings
) -> None:
    from tests.api import ADMIN, api_client
    from tests.conftest import free_port

    nowhere = settings.replace(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/hookpump")
    receiver = await Receiver().start()
    try:
        eid = await make_endpoint(store, receiver.url())
        async with running_worker(nowhere), api_client(nowhere) as client:
            sent = await client.post("/v1/messages", json={"event_type": "order.paid", "payload": {"n": 1},
                                                           "endpoint_ids": [eid]}, headers=ADMIN)
            assert sent.status_code == 202
            await wait_until(lambda: _received(receiver, 1))
            await asyncio.sleep(0.5)
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            history = ready.json()["history"]
            assert history["status"] == "degraded" and "does not answer" in history["detail"]
            assert "127.0.0.1" not in ready.text  # the database's address and error stay in the log
            # The message (with the pending state) and the attempt + succeeded record, kept for the
            # database: at least those. (On the merged tree of 2026-12-04 a third record showed in about
            # half the runs, unexplained yet: see the closing note of that stop.)
            assert history["outbox_length"] >= 2
            # The log cannot be read meanwhile: a clear 503, not a 500.
            listing = await client.get("/v1/deliveries", headers=ADMIN)
            assert listing.status_code == 503, listing.text
    finally:
        await receiver.stop()
