"""Operator actions through the HTTP API, with a real pump where behaviour needs it: retry, cancel,
bulk retry (run by the worker's arq jobs worker), pause and resume, re-enabling, and scopes."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from core.models import iso
from core.settings import Settings
from core.store import Completion, Store
from tests.api import ADMIN, api_client, assert_matches_contract, assert_problem, bearer, snapshot
from tests.history_db import caught_up
from tests.pumping import make_endpoint, running_worker, send, statuses
from tests.receiver import Receiver, Reply, always, max_in_window

NOWHERE = "http://127.0.0.1:9/never"
MISSING_DELIVERY = "dlv_00000000000000000000000000_1"
MISSING_ENDPOINT = "ep_00000000000000000000000000"


@pytest.fixture
def database_url(history_url: str) -> str:
    """Every test here runs on both history backends (SQLite and PostgreSQL)."""
    return history_url


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def api_key(client: httpx.AsyncClient, *scopes: str) -> dict[str, Any]:
    response = await client.post("/v1/api-keys", json={"name": "ops", "scopes": list(scopes)}, headers=ADMIN)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def until_status(
    store: Store, dids: list[str], status: str, settings: Settings, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while (await statuses(store, dids, settings)).get(status, 0) < len(dids):
        assert time.monotonic() < deadline, await statuses(store, dids, settings)
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_retry_requeues_a_failed_delivery_as_manual(
    client: httpx.AsyncClient, store: Store, settings: Settings, receiver: Receiver
) -> None:
    operator = await api_key(client, "admin")
    eid = await make_endpoint(store, receiver.url())
    [did] = await send(store, 1, endpoint_ids=[eid])
    receiver.script = always(Reply(400))
    async with running_worker(settings):
        await store.endpoints.update(eid, {"enabled": True})
        await until_status(store, [did], "failed", settings)
        receiver.script = always(Reply(200))
        response = await client.post(f"/v1/deliveries/{did}/retry", headers=bearer(operator["key"]))
        assert response.status_code == 202
        assert_matches_contract(response.json(), "Delivery")
        assert response.json()["status"] == "pending" and response.json()["next_attempt_at"] is not None
        await until_status(store, [did], "succeeded", settings)
    await caught_up(store, settings)
    detail = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()
    [action] = detail["actions"]
    assert action["action"] == "retry" and action["by"] == operator["id"]
    assert abs(time.time() - _seconds(action["at"])) < 30
    assert [(a["trigger"], a["response"]["status"]) for a in detail["attempts"]] == [("scheduled", 400),
                                                                                  ("manual", 200)]
    assert len(receiver.received) == 2


async def test_retry_of_a_delivery_waiting_for_its_next_attempt_means_try_now(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    """Due at once, recorded as an operator's action, its attempt count kept; 409 only while it is
    being sent."""
    eid = await make_endpoint(store, NOWHERE)
    [did] = await send(store, 1, endpoint_ids=[eid])
    claimed = (await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)).deliveries[0]
    sending = await client.post(f"/v1/deliveries/{did}/retry", headers=ADMIN)
    assert "being sent right now" in assert_problem(sending, 409)["detail"]
    an_hour = int(time.time() * 1000) + 3_600_000
    record = {"number": claimed.attempt, "trigger": claimed.trigger, "outcome": "retry"}
    await store.pump.complete([Completion(did, claimed.attempt, "retry", due_ms=an_hour, status_code=500,
                                          error="HTTP 500", record=record)])
    waiting = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()["delivery"]
    assert waiting["status"] == "retrying" and _seconds(waiting["next_attempt_at"]) > time.time() + 3000
    response = await client.post(f"/v1/deliveries/{did}/retry", headers=ADMIN)
    assert response.status_code == 202, response.text
    assert_matches_contract(response.json(), "Delivery")
    now_due = response.json()
    assert now_due["status"] == "retrying" and now_due["attempts"] == 1
    assert abs(_seconds(now_due["next_attempt_at"]) - time.time()) < 5
    assert (await store.redis.zscore(f"hp:ep:{eid}:due", did)) <= time.time() * 1000
    await caught_up(store, settings)  # actions are read from the history store
    [action] = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()["actions"]
    assert action["action"] == "retry" and action["by"] == "bootstrap"
    again = (await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)).deliveries
    assert [(d.id, d.trigger) for d in again] == [(did, "manual")]


async def test_try_now_still_waits_out_a_pause(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE)
    [did] = await send(store, 1, endpoint_ids=[eid])
    until = "2999-01-01T00:00:00Z"
    assert (await client.post(f"/v1/endpoints/{eid}/pause", json={"until": until}, headers=ADMIN)).status_code == 200
    assert (await client.post(f"/v1/deliveries/{did}/retry", headers=ADMIN)).status_code == 202
    claim = await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)
    assert claim.deliveries == []
    assert (await store.redis.zscore("hp:active", eid)) >= _seconds(until) * 1000


async def test_a_manual_retry_stays_manual_when_its_claim_is_released_unsent(
    client: httpx.AsyncClient, store: Store
) -> None:
    """The sender releases a claim it must not send yet (paused endpoint, missed pacing slot); the
    delivery's next attempt is still the operator's retry."""
    eid = await make_endpoint(store, NOWHERE)
    [did] = await send(store, 1, endpoint_ids=[eid])
    await client.post(f"/v1/deliveries/{did}/cancel", headers=ADMIN)
    assert (await client.post(f"/v1/deliveries/{did}/retry", headers=ADMIN)).status_code == 202
    for _ in range(2):
        claim = await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)
        [claimed] = claim.deliveries
        assert claimed.trigger == "manual"
        await store.pump.complete([Completion(did, claimed.attempt, "released", due_ms=0)])
    claimed = (await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)).deliveries[0]
    record = {"number": claimed.attempt, "trigger": claimed.trigger, "outcome": "retry"}
    await store.pump.complete([Completion(did, claimed.attempt, "retry", due_ms=0, status_code=500,
                                          error="HTTP 500", record=record)])
    assert (await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10,
                                   max_deliveries=10)).deliveries[0].trigger == "scheduled"


async def test_retry_of_an_expired_message_or_unknown_delivery_is_refused(
    client: httpx.AsyncClient, store: Store
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    [did] = await send(store, 1, endpoint_ids=[eid])
    assert (await client.post(f"/v1/deliveries/{did}/cancel", headers=ADMIN)).status_code == 200
    await store.redis.delete(f"hp:msg:msg_{did[4:30]}", f"hp:msg:msg_{did[4:30]}:payload")  # as retention would
    before = await snapshot(store)
    assert "expired" in assert_problem(await client.post(f"/v1/deliveries/{did}/retry", headers=ADMIN), 409)["detail"]
    assert await snapshot(store) == before
    for path in (f"/v1/deliveries/{MISSING_DELIVERY}/retry", f"/v1/deliveries/{MISSING_DELIVERY}/cancel",
                 "/v1/deliveries/nonsense/retry"):
        assert_problem(await client.post(path, headers=ADMIN), 404)


@pytest.mark.slow
async def test_cancel_takes_a_queued_delivery_and_refuses_one_being_sent_or_ended(
    client: httpx.AsyncClient, store: Store, settings: Settings, receiver: Receiver
) -> None:
    eid = await make_endpoint(store, receiver.url())
    await store.endpoints.update(eid, {"enabled": False})
    [queued, slow] = await send(store, 2, endpoint_ids=[eid])
    response = await client.post(f"/v1/deliveries/{queued}/cancel", headers=ADMIN)
    assert response.status_code == 200
    assert_matches_contract(response.json(), "Delivery")
    assert response.json()["status"] == "cancelled" and response.json()["next_attempt_at"] is None
    assert await store.redis.zscore(f"hp:ep:{eid}:due", queued) is None
    await caught_up(store, settings)
    detail = (await client.get(f"/v1/deliveries/{queued}", headers=ADMIN)).json()
    assert [(a["action"], a["by"]) for a in detail["actions"]] == [("cancel", "bootstrap")]
    again = await client.post(f"/v1/deliveries/{queued}/cancel", headers=ADMIN)
    assert "already ended" in assert_problem(again, 409)["detail"]

    receiver.script = always(Reply(200, delay=1.5))
    async with running_worker(settings):
        await store.endpoints.update(eid, {"enabled": True})
        await until_status(store, [slow], "delivering", settings)
        sending = await client.post(f"/v1/deliveries/{slow}/cancel", headers=ADMIN)
        assert "being sent right now" in assert_problem(sending, 409)["detail"]
        await until_status(store, [slow], "succeeded", settings)
    await caught_up(store, settings)
    assert (await client.get(f"/v1/deliveries/{slow}", headers=ADMIN)).json()["actions"] == []
    assert len(receiver.received) == 1  # the cancelled one never went out


@pytest.mark.slow
async def test_pause_holds_deliveries_back_and_resume_releases_them(
    client: httpx.AsyncClient, store: Store, settings: Settings, receiver: Receiver
) -> None:
    eid = await make_endpoint(store, receiver.url())
    paused = await client.post(f"/v1/endpoints/{eid}/pause", headers=ADMIN)
    assert paused.status_code == 200
    assert_matches_contract(paused.json(), "EndpointWithFlow")
    assert paused.json()["id"] == eid
    assert {k: paused.json()["flow"][k] for k in ("paused", "paused_until", "pause_reason")} == {
        "paused": True, "paused_until": None, "pause_reason": "operator"}
    dids = await send(store, 20, endpoint_ids=[eid])
    async with running_worker(settings):
        await asyncio.sleep(3 * settings.pump_interval)  # several pump windows
        assert receiver.received == []
        assert await statuses(store, dids) == {"pending": 20}
        resumed = await client.post(f"/v1/endpoints/{eid}/resume", headers=ADMIN)
        assert resumed.status_code == 200 and resumed.json()["flow"]["paused"] is False
        await receiver.wait_for(20, timeout=10)
    stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    assert [(a["action"], a["by"]) for a in stats["recent_actions"]] == [("resume", "bootstrap"),
                                                                       ("pause", "bootstrap")]


@pytest.mark.slow
async def test_a_timed_pause_ends_by_itself(
    client: httpx.AsyncClient, store: Store, settings: Settings, receiver: Receiver
) -> None:
    eid = await make_endpoint(store, receiver.url())
    until_ms = int(time.time() * 1000) + 2000
    response = await client.post(f"/v1/endpoints/{eid}/pause", json={"until": iso(until_ms)}, headers=ADMIN)
    assert response.json()["flow"]["paused_until"] == iso(until_ms)
    await send(store, 5, endpoint_ids=[eid])
    async with running_worker(settings):
        await receiver.wait_for(5, timeout=10)
    assert min(r.at for r in receiver.received) >= until_ms / 1000 - 0.05


async def test_pause_refuses_a_past_or_malformed_until_and_unknown_endpoints(
    client: httpx.AsyncClient, store: Store
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    before = await snapshot(store)
    for body in ({"until": "2001-01-01T00:00:00Z"}, {"until": "soon"}, {"until": None}, {"for": 60}, []):
        assert_problem(await client.post(f"/v1/endpoints/{eid}/pause", json=body, headers=ADMIN), 422)
    assert await snapshot(store) == before
    for verb in ("pause", "resume"):
        assert_problem(await client.post(f"/v1/endpoints/{MISSING_ENDPOINT}/{verb}", headers=ADMIN), 404)


@pytest.mark.slow
async def test_bulk_retry_through_the_api_is_run_by_the_worker_and_paced(
    client: httpx.AsyncClient, store: Store, settings: Settings, receiver: Receiver
) -> None:
    rate = 600  # 10 a second
    eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=60000)
    other = await make_endpoint(store, receiver.url("/other"), rate_limit_per_minute=60000)
    dids = await send(store, 200, endpoint_ids=[eid])
    untouched = await send(store, 5, endpoint_ids=[other])
    receiver.script = always(Reply(400))
    async with running_worker(settings):
        await until_status(store, dids + untouched, "failed", settings, timeout=30)
        patched = await client.patch(f"/v1/endpoints/{eid}", json={"rate_limit_per_minute": rate}, headers=ADMIN)
        assert patched.status_code == 200
        receiver.received.clear()
        receiver.script = always(Reply(200))
        started = await client.post("/v1/deliveries/retry", json={"endpoint_id": eid}, headers=ADMIN)
        assert started.status_code == 202
        accepted = started.json()
        assert_matches_contract(accepted, "BulkRetryAccepted")
        assert accepted["state"] == "queued" and accepted["matched_estimate"] == 200
        assert started.headers["location"] == accepted["progress_url"] == f"/v1/deliveries/retry/{accepted['id']}"
        await receiver.wait_for(200, timeout=60)
        progress: dict[str, Any] = {}
        for _ in range(100):
            progress = (await client.get(accepted["progress_url"], headers=ADMIN)).json()
            if progress["state"] == "done":
                break
            await asyncio.sleep(0.1)
    assert_matches_contract(progress, "BulkRetry")
    assert {k: progress[k] for k in ("state", "matched", "queued", "skipped", "by")} == {
        "state": "done", "matched": 200, "queued": 200, "skipped": 0, "by": "bootstrap"}
    assert progress["filter"] == {"endpoint_id": eid, "status": ["failed"], "event_type": None,
                                  "since": None, "until": None}
    assert progress["finished_at"] is not None
    times = [r.at for r in receiver.received]
    assert len(times) == 200 and not receiver.for_path("/other")
    assert max_in_window(times) <= math.ceil(rate / 60) + 1
    assert await statuses(store, dids, settings) == {"succeeded": 200}
    assert await statuses(store, untouched, settings) == {"failed": 5}
    await caught_up(store, settings)
    actions = (await client.get(f"/v1/deliveries/{dids[0]}", headers=ADMIN)).json()["actions"]
    assert [(a["action"], a["by"]) for a in actions] == [(f"bulk_retry:{accepted['id']}", "bootstrap")]


async def test_bulk_retry_refuses_bad_filters_and_changes_nothing(client: httpx.AsyncClient, store: Store) -> None:
    await make_endpoint(store, NOWHERE)
    before = await snapshot(store)
    for body, field in (
        ({"endpoint_id": MISSING_ENDPOINT}, "endpoint_id"),
        ({"status": ["pending"]}, "status"),
        ({"status": []}, "status"),
        ({"status": "failed"}, "status"),
        ({"status": ["failed", "failed"]}, "status"),
        ({"since": "last week"}, "since"),
        ({"event_type": ""}, "event_type"),
        ({"message_id": "msg_x"}, "message_id"),
    ):
        response = await client.post("/v1/deliveries/retry", json=body, headers=ADMIN)
        assert assert_problem(response, 422)["errors"][0]["field"] == field
    assert await snapshot(store) == before
    assert_problem(await client.get("/v1/deliveries/retry/blk_00000000000000000000000000", headers=ADMIN), 404)


async def test_bulk_retry_estimates_only_what_an_index_can_count(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE)
    dids = await send(store, 4, endpoint_ids=[eid])
    await client.post(f"/v1/deliveries/{dids[0]}/cancel", headers=ADMIN)
    by_status = await client.post("/v1/deliveries/retry", json={"status": ["cancelled", "failed"]}, headers=ADMIN)
    assert by_status.json()["matched_estimate"] == 1
    by_time = await client.post("/v1/deliveries/retry", json={"since": "2020-01-01T00:00:00Z"}, headers=ADMIN)
    assert by_time.json()["matched_estimate"] is None
    progress = (await client.get(by_time.json()["progress_url"], headers=ADMIN)).json()
    assert progress["state"] == "queued" and progress["filter"]["since"] == "2020-01-01T00:00:00.000Z"


@pytest.mark.slow
async def test_re_enabling_an_endpoint_disabled_by_410_is_recorded_and_releases_its_deliveries(
    client: httpx.AsyncClient, store: Store, settings: Settings, receiver: Receiver
) -> None:
    receiver.script = lambda n, _request: Reply(410) if n == 0 else Reply(200)
    eid = await make_endpoint(store, receiver.url(), max_in_flight=1)
    dids = await send(store, 5, endpoint_ids=[eid])
    async with running_worker(settings):
        await receiver.wait_for(1, timeout=10)
        for _ in range(100):
            if not (await store.endpoints.get(eid)).enabled:
                break
            await asyncio.sleep(0.05)
        stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
        assert stats["paused"] is True and stats["pause_reason"] == "gone"
        enabled = await client.patch(f"/v1/endpoints/{eid}", json={"enabled": True}, headers=ADMIN)
        assert enabled.status_code == 200 and enabled.json()["disabled_reason"] is None
        await until_status(store, dids, "succeeded", settings)
    stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    [action] = stats["recent_actions"]
    assert {k: action[k] for k in ("action", "by", "disabled_reason")} == {
        "action": "enable", "by": "bootstrap", "disabled_reason": "gone"}
    # A PATCH that does not change `enabled` records nothing.
    await client.patch(f"/v1/endpoints/{eid}", json={"enabled": True, "description": "x"}, headers=ADMIN)
    assert len((await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()["recent_actions"]) == 1


async def test_a_read_key_may_look_but_not_act(client: httpx.AsyncClient, store: Store) -> None:
    reader = bearer((await api_key(client, "read"))["key"])
    eid = await make_endpoint(store, NOWHERE)
    [pending, ended] = await send(store, 2, endpoint_ids=[eid])
    await client.post(f"/v1/deliveries/{ended}/cancel", headers=ADMIN)
    job = (await client.post("/v1/deliveries/retry", json={}, headers=ADMIN)).json()
    before = await snapshot(store)
    for method, path, body in (
        ("POST", f"/v1/deliveries/{ended}/retry", None),
        ("POST", f"/v1/deliveries/{pending}/cancel", None),
        ("POST", "/v1/deliveries/retry", {"status": ["cancelled"]}),
        ("POST", f"/v1/endpoints/{eid}/pause", {"until": "2999-01-01T00:00:00Z"}),
        ("POST", f"/v1/endpoints/{eid}/resume", None),
        ("PATCH", f"/v1/endpoints/{eid}", {"enabled": False}),
    ):
        response = await client.request(method, path, json=body, headers=reader)
        assert "admin" in assert_problem(response, 403)["detail"], path
    assert await snapshot(store) == before
    for path in ("/v1/deliveries", f"/v1/deliveries/{pending}", f"/v1/endpoints/{eid}/attempts",
                 f"/v1/endpoints/{eid}/stats", "/v1/queue", job["progress_url"]):
        assert (await client.get(path, headers=reader)).status_code == 200, path


def _seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
