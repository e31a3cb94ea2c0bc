"""Endpoint statistics and the queue overview through the HTTP API, checked against the truth read
from the live delivery hashes and the history store after a real pump run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from core.history import create_history_store
from core.ids import created_ms
from core.models import DeliveryFilter, iso
from core.settings import Settings
from core.store import Actor, Completion, Store
from tests.api import ADMIN, api_client, assert_matches_contract, assert_problem
from tests.history_db import caught_up
from tests.pumping import make_endpoint, running_worker, send
from tests.receiver import Receiver, Reply

NOWHERE = "http://127.0.0.1:9/never"


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def true_counts(store: Store, settings: Settings, eid: str | None = None) -> Counter[str]:
    """Deliveries by status, not from the counters under test: Redis's hashes for the deliveries it
    holds, the history store for those it has forgotten (a delivery leaves Redis only after its
    final state is committed there, so together they see every delivery)."""
    status_of: dict[str, str] = {}
    history = create_history_store(settings)
    await history.open()
    try:
        cursor = None
        while True:
            rows, cursor = await history.list_deliveries(DeliveryFilter(endpoint_id=eid), limit=250, cursor=cursor)
            status_of.update((d.id, d.status.value) for d in rows)
            if cursor is None:
                break
    finally:
        await history.close()
    for key in await store.redis.keys("hp:dlv:*"):
        status, owner = await store.redis.hmget(key, ["status", "eid"])
        if eid is None or owner == eid:
            status_of[key[len("hp:dlv:"):]] = status
    return Counter(status_of.values())


async def attempt_outcomes(store: Store, settings: Settings, eid: str) -> Counter[str]:
    await caught_up(store, settings)
    history = create_history_store(settings)
    await history.open()
    try:
        records, _ = await history.endpoint_attempts(eid, limit=250, cursor=None)
    finally:
        await history.close()
    return Counter(str(record["outcome"]) for record in records)


@pytest.mark.slow
async def test_stats_and_overview_agree_with_the_truth_after_a_mixed_run(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    def script(n: int, request: web.Request) -> Reply:
        if request.path == "/fail":
            return Reply(400)
        if request.path == "/busy" and n % 3 == 0:
            return Reply(429, {"Retry-After": "0"})
        if request.path == "/flaky" and n % 2 == 0:
            return Reply(503)
        return Reply()

    receiver = await Receiver(script).start()
    try:
        eids = {path: await make_endpoint(store, receiver.url(path)) for path in ("/ok", "/fail", "/busy", "/flaky")}
        held = await make_endpoint(store, NOWHERE, enabled=False)  # keeps a backlog the pump cannot send
        for eid in eids.values():
            await send(store, 25, endpoint_ids=[eid])
        await send(store, 7, endpoint_ids=[held])
        async with running_worker(settings):
            deadline = time.monotonic() + 60
            while True:
                counts = await true_counts(store, settings)
                if counts["succeeded"] + counts["failed"] == 100:
                    break
                assert time.monotonic() < deadline, counts
                await asyncio.sleep(0.1)
            overview = (await client.get("/v1/queue", headers=ADMIN)).json()
            assert [w["id"] for w in overview["workers"]] == [settings.worker_id]
    finally:
        await receiver.stop()

    for path, eid in eids.items():
        response = await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)
        assert response.status_code == 200
        stats = response.json()
        assert_matches_contract(stats, "EndpointStats")
        assert {k: v for k, v in stats["counts"].items() if v} == await true_counts(store, settings, eid), path
        outcomes = await attempt_outcomes(store, settings, eid)
        # Attempts by outcome over the last hour; a retry-able failure counts as "retrying".
        assert stats["last_hour"] == {"succeeded": outcomes["succeeded"], "failed": outcomes["failed"],
                                      "retrying": outcomes["retry"], "overloaded": outcomes["overloaded"]}, path
        assert stats["backlog"] == 0 and stats["in_flight"] == 0 and stats["oldest_pending_at"] is None
        assert stats["success_ratio"] == round(outcomes["succeeded"] / sum(outcomes.values()), 4)
    busy = (await client.get(f"/v1/endpoints/{eids['/busy']}/stats", headers=ADMIN)).json()
    assert busy["last_hour"]["overloaded"] > 0 and busy["counts"]["succeeded"] == 25
    fail = (await client.get(f"/v1/endpoints/{eids['/fail']}/stats", headers=ADMIN)).json()
    assert fail["counts"]["failed"] == 25 and fail["success_ratio"] == 0

    overview = (await client.get("/v1/queue", headers=ADMIN)).json()
    assert_matches_contract(overview, "QueueOverview")
    truth = await true_counts(store, settings)
    assert {k: v for k, v in overview["counts"].items() if v} == truth
    assert truth == {"succeeded": 75, "failed": 25, "pending": 7}
    assert overview["backlog"] == 7
    assert overview["largest_backlogs"] == [{"endpoint_id": held, "backlog": 7}]
    assert overview["oldest_pending_at"] is not None and overview["oldest_pending_age_seconds"] >= 0
    assert overview["pump"]["last_run_at"] is not None
    assert overview["pump"]["interval_seconds"] == settings.pump_interval
    held_stats = (await client.get(f"/v1/endpoints/{held}/stats", headers=ADMIN)).json()
    assert held_stats["backlog"] == 7 and held_stats["paused"] is True and held_stats["pause_reason"] == "disabled"
    assert held_stats["estimated_drain_seconds"] is None


async def test_a_paused_endpoint_shows_until_when_and_why(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=60)
    await send(store, 3, endpoint_ids=[eid])
    until_ms = int(time.time() * 1000) + 600_000
    await client.post(f"/v1/endpoints/{eid}/pause", json={"until": iso(until_ms)}, headers=ADMIN)
    stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    assert_matches_contract(stats, "EndpointStats")
    assert {k: stats[k] for k in ("paused", "paused_until", "pause_reason", "backlog")} == {
        "paused": True, "paused_until": iso(until_ms), "pause_reason": "operator", "backlog": 3}
    # Draining waits for the pause, then takes 3 deliveries at 1 a second.
    assert 600 <= stats["estimated_drain_seconds"] <= 600 + 3 + 1
    assert stats["recent_actions"][0]["until"] == iso(until_ms)

    await client.post(f"/v1/endpoints/{eid}/pause", headers=ADMIN)  # until resumed
    stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    assert (stats["paused"], stats["paused_until"], stats["pause_reason"]) == (True, None, "operator")

    await client.post(f"/v1/endpoints/{eid}/resume", headers=ADMIN)
    stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    assert (stats["paused"], stats["paused_until"], stats["pause_reason"]) == (False, None, None)
    assert [a["action"] for a in stats["recent_actions"]] == ["resume", "pause", "pause"]


async def test_an_empty_queue_and_unknown_endpoints(client: httpx.AsyncClient) -> None:
    overview = (await client.get("/v1/queue", headers=ADMIN)).json()
    assert_matches_contract(overview, "QueueOverview")
    assert overview["backlog"] == 0 and overview["workers"] == [] and overview["pump"]["last_run_at"] is None
    assert overview["pump"]["late"] is True
    for path in ("/v1/endpoints/ep_00000000000000000000000000/stats", "/v1/endpoints/nope/stats"):
        assert_problem(await client.get(path, headers=ADMIN), 404)
    assert_problem(await client.get("/v1/queue?verbose=1", headers=ADMIN), 422)


async def test_oldest_pending_is_the_longest_wait_of_a_due_delivery_and_skips_later_retries(
    client: httpx.AsyncClient, store: Store
) -> None:
    held = await make_endpoint(store, NOWHERE, enabled=False)
    later = await make_endpoint(store, NOWHERE)
    first, *_ = await send(store, 3, endpoint_ids=[held])
    [retried] = await send(store, 1, endpoint_ids=[later])
    # Never delayed: due since its creation, which its id carries.
    created = created_ms(first)
    stats = (await client.get(f"/v1/endpoints/{held}/stats", headers=ADMIN)).json()
    assert_matches_contract(stats, "EndpointStats")
    assert stats["oldest_pending_at"] == iso(created) and stats["oldest_pending_age_seconds"] >= 0
    # A delivery waiting for a retry an hour away is not waiting for the pump: it does not count.
    claim = await store.pump.claim("w", horizon_ms=200, max_endpoints=10, max_deliveries=10)
    assert [d.id for d in claim.deliveries] == [retried]
    await store.pump.complete([Completion(retried, 1, "retry", due_ms=int(time.time() * 1000) + 3_600_000,
                                          status_code=500, record={"outcome": "retry"}, started_ms=1)])
    stats = (await client.get(f"/v1/endpoints/{later}/stats", headers=ADMIN)).json()
    assert stats["backlog"] == 1 and stats["oldest_pending_at"] is None and stats["oldest_pending_age_seconds"] is None
    overview = (await client.get("/v1/queue", headers=ADMIN)).json()
    assert_matches_contract(overview, "QueueOverview")
    assert overview["backlog"] == 4 and overview["oldest_pending_at"] == iso(created)
    await store.operations.cancel(await store.redis.zrange(f"hp:ep:{held}:due", 0, -1), Actor("k"))
    overview = (await client.get("/v1/queue", headers=ADMIN)).json()
    assert overview["backlog"] == 1 and overview["oldest_pending_at"] is None
