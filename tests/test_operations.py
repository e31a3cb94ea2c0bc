"""Operator actions and retention, against real Redis and the running pump."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import uuid

import pytest
from aiohttp import web

from core.history import DeliveryHistory, create_history_store
from core.history.log import DeliveryLog
from core.settings import Settings
from core.store import Actor, DeliveryFilter, Store
from scheduler.jobs import run_bulk_retry, run_retention_sweep
from tests.history_db import caught_up
from tests.pumping import make_endpoint, running_worker, send, statuses
from tests.receiver import Receiver, Reply, always, max_in_window

OPERATOR = Actor("key_test")


async def fail_all(store: Store, settings: Settings, eid: str, dids: list[str], receiver: Receiver) -> None:
    """Drive deliveries to `failed` through the real pump (the receiver answers 400)."""
    receiver.script = always(Reply(400))
    async with running_worker(settings):
        while (await statuses(store, dids, settings)).get("failed", 0) < len(dids):
            await asyncio.sleep(0.05)
    await caught_up(store, settings)


@pytest.mark.slow
async def test_a_bulk_retry_of_1000_failures_is_paced_by_the_pump(store: Store, settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        rate = 1200  # 20/s
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=60000, max_in_flight=50)
        dids = await send(store, 1000, endpoint_ids=[eid])
        await fail_all(store, settings, eid, dids, receiver)
        await store.endpoints.update(eid, {"rate_limit_per_minute": rate, "max_in_flight": 10})
        receiver.received.clear()
        receiver.script = always(Reply())
        job_id = uuid.uuid4().hex
        await store.operations.start_bulk_retry(job_id, {"endpoint_id": eid, "status": ["failed"]}, OPERATOR)
        # The failed deliveries have left Redis (their final state is in the history store): the bulk
        # retry finds them in the history and brings them back.
        assert await store.redis.exists(*(f"hp:dlv:{did}" for did in dids)) == 0
        history = create_history_store(settings)
        await history.open()
        try:
            totals = await run_bulk_retry(store, DeliveryLog(store, history), job_id)
        finally:
            await history.close()
        assert totals == {"matched": 1000, "queued": 1000, "skipped": 0}
        assert (await statuses(store, dids)) == {"pending": 1000}
        async with running_worker(settings):
            await receiver.wait_for(60, timeout=10)
        times = [r.at for r in receiver.received]
        assert max_in_window(times) <= math.ceil(rate / 60) + 1
        progress = await store.operations.bulk_progress(job_id)
        assert progress["state"] == "done" and progress["queued"] == "1000"
        # Each retried delivery records who retried it, and its next attempt is marked manual.
        await caught_up(store, settings)
        actions = (await delivery_log(settings, store, dids[0])).actions
        assert actions[-1]["by"] == "key_test" and actions[-1]["action"].startswith("bulk_retry")
    finally:
        await receiver.stop()


async def test_retry_refuses_queued_deliveries_and_cancel_refuses_terminal_ones(store: Store) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/never")
    [did] = await send(store, 1, endpoint_ids=[eid])
    assert await store.operations.retry([did], OPERATOR) == ["already_queued"]
    assert await store.operations.cancel([did], OPERATOR) == ["cancelled"]
    assert await store.redis.zcard(f"hp:ep:{eid}:due") == 0
    assert await store.operations.cancel([did], OPERATOR) == ["terminal"]
    assert await store.operations.retry([did], OPERATOR) == ["queued"]
    record = await store.redis.hgetall(f"hp:dlv:{did}")
    assert record["status"] == "pending" and record["trigger"] == "manual"
    assert await store.redis.zscore(f"hp:ep:{eid}:due", did) is not None
    assert await store.operations.retry(["dlv_nope"], OPERATOR) == ["missing"]


async def test_retention_removes_old_terminal_deliveries_and_never_a_queued_one(
    store: Store, settings: Settings
) -> None:
    receiver = await Receiver(always(Reply())).start()
    try:
        done_eid = await make_endpoint(store, receiver.url())
        held_eid = await make_endpoint(store, receiver.url(), enabled=False)
        done = await send(store, 20, endpoint_ids=[done_eid])
        held = await send(store, 20, endpoint_ids=[held_eid])
        async with running_worker(settings):
            while (await statuses(store, done, settings)).get("succeeded", 0) < 20:
                await asyncio.sleep(0.05)
        await caught_up(store, settings)
        # Redis keeps only live state: the finished deliveries' hashes, attempts and indexes are gone.
        assert await store.redis.exists(*(f"hp:dlv:{did}" for did in done)) == 0
        assert await store.redis.keys("hp:att:*") == [] and await store.redis.keys("hp:idx:dlv:st:succeeded") == []
        assert await store.redis.hget("hp:count", "succeeded") == "20"
        history = create_history_store(settings)
        await history.open()
        try:
            # Nothing is old enough yet: the sweep removes nothing.
            assert await run_retention_sweep(store, history, settings) == 0
            # With no retention at all (a setting start-up refuses, made here past its check), every
            # finished delivery is past it; the queued ones, just as
            # old, must survive (SQLite here: deletes by row; PostgreSQL drops whole past days).
            no_retention = dataclasses.replace(settings, retention=0, retry_horizon=0)
            assert await run_retention_sweep(store, history, no_retention) == 20
            assert await statuses(store, done, settings) == {None: 20}  # type: ignore[dict-item]
            assert await statuses(store, held, settings) == {"pending": 20}
            assert (await history.endpoint_attempts(done_eid, limit=5, cursor=None)) == ([], None)
        finally:
            await history.close()
        assert await store.redis.hget("hp:count", "succeeded") == "0"
        # The held deliveries' messages stay in Redis; the finished ones' went to the history store.
        assert set(await store.redis.keys("hp:msg:*")) == {f"hp:msg:msg_{d[4:30]}{part}" for d in held
                                                           for part in ("", ":payload")}
    finally:
        await receiver.stop()


@pytest.mark.slow
async def test_stats_agree_with_the_true_counts_after_a_mixed_run(store: Store, settings: Settings) -> None:
    def script(n: int, request: web.Request) -> Reply:
        kind = request.path
        if kind == "/fail":
            return Reply(400)
        if kind == "/busy" and n % 3 == 0:
            return Reply(429, {"Retry-After": "0"})
        if kind == "/flaky" and n % 2 == 0:
            return Reply(503)
        return Reply()

    receiver = await Receiver(script).start()
    try:
        eids = {path: await make_endpoint(store, receiver.url(path)) for path in ("/ok", "/fail", "/busy", "/flaky")}
        for eid in eids.values():
            await send(store, 25, endpoint_ids=[eid])
        async with running_worker(settings):
            while True:
                counts = await store.redis.hgetall("hp:count")
                if int(counts.get("succeeded", 0)) + int(counts.get("failed", 0)) == 100:
                    break
                await asyncio.sleep(0.1)
        await caught_up(store, settings)
        history = create_history_store(settings)
        await history.open()
        try:
            for path, eid in eids.items():
                stats = await store.monitoring.endpoint_stats(eid)
                truth: dict[str, int] = {}
                rows, _ = await history.list_deliveries(DeliveryFilter(endpoint_id=eid), limit=100, cursor=None)
                for row in rows:
                    truth[row.status.value] = truth.get(row.status.value, 0) + 1
                assert {k: v for k, v in stats["counts"].items() if v} == truth, path
                attempts, _ = await history.endpoint_attempts(eid, limit=250, cursor=None)
                assert sum(stats["last_hour"].values()) == len(attempts), path
                assert stats["backlog"] == 0 and stats["in_flight"] == 0
        finally:
            await history.close()
        fail = await store.monitoring.endpoint_stats(eids["/fail"])
        assert fail["counts"]["failed"] == 25 and fail["success_ratio"] == 0
        overview = await store.monitoring.queue_overview(pump_interval=settings.pump_interval)
        assert overview["counts"]["succeeded"] == 75 and overview["counts"]["failed"] == 25
        assert overview["backlog"] == 0
    finally:
        await receiver.stop()


async def delivery_log(settings: Settings, store: Store, did: str) -> DeliveryHistory:
    history = create_history_store(settings)
    await history.open()
    try:
        return await DeliveryLog(store, history).get_delivery(did)
    finally:
        await history.close()
