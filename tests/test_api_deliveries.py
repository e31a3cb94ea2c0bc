"""The delivery log through the HTTP API: every filter, exact paging while deliveries arrive, a
delivery's attempts after a real pump run, the endpoint attempt log, and the refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from core.models import iso
from core.settings import Settings
from core.store import Actor, Store
from tests.api import ADMIN, api_client, assert_matches_contract, assert_problem
from tests.history_db import caught_up, open_history
from tests.pumping import delivery as delivery_now
from tests.pumping import make_endpoint, running_worker, send, statuses, wait_until
from tests.receiver import Receiver, Reply

NOWHERE = "http://127.0.0.1:9/never"  # nothing is sent in tests without a worker
MISSING_DELIVERY = "dlv_00000000000000000000000000_1"


@pytest.fixture
def database_url(history_url: str) -> str:
    """Every test here runs on both history backends (SQLite and PostgreSQL)."""
    return history_url


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def listed(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """Every delivery id the filter matches, following cursors, in the order answered."""
    ids: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/deliveries", params=query, headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert_matches_contract(body, "DeliveryPage")
        ids += [d["id"] for d in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def newest_first(ids: list[str]) -> list[str]:
    return sorted(ids, reverse=True)


async def test_each_filter_answers_exactly_the_matching_deliveries(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    a = await make_endpoint(store, NOWHERE)
    b = await make_endpoint(store, NOWHERE)
    paid_both = await send(store, 6, event_type="order.paid")  # fan out: to a and b
    users_a = await send(store, 4, endpoint_ids=[a], event_type="user.created")
    await asyncio.sleep(0.01)  # ids carry creation time in ms: the later batch starts strictly later
    boundary_ms = int(time.time() * 1000)
    late_b = await send(store, 3, endpoint_ids=[b], event_type="order.paid")
    every = paid_both + users_a + late_b
    on_a = [d for d in every if (await store.deliveries.get(d)).endpoint_id == a]
    cancelled = on_a[:2] + late_b[:1]
    assert await store.operations.cancel(cancelled, Actor("key_test")) == ["cancelled"] * 3
    pending = [d for d in every if d not in cancelled]
    await caught_up(store, settings)

    assert await listed(client) == newest_first(every)
    assert await listed(client, endpoint_id=a, limit=3) == newest_first(on_a)
    assert await listed(client, status="cancelled") == newest_first(cancelled)
    assert await listed(client, status="pending", limit=4) == newest_first(pending)
    # Several statuses: repeated parameters and a comma list mean the same.
    both = newest_first(every)
    assert await listed(client, status=["pending", "cancelled"], limit=5) == both
    assert await listed(client, status="cancelled,pending", limit=5) == both
    assert await listed(client, event_type="user.created") == newest_first(users_a)
    # Filters combine, including ones no single index serves (event type on one endpoint).
    assert await listed(client, endpoint_id=b, event_type="order.paid", status="pending") == newest_first(
        [d for d in paid_both + late_b if d not in cancelled and d not in on_a]
    )
    message_id = (await delivery_now(store, settings, paid_both[0])).message_id
    assert await listed(client, message_id=message_id) == newest_first(
        [d for d in paid_both if (await delivery_now(store, settings, d)).message_id == message_id]
    )
    # since/until: inclusive bounds; any offset; ms precision.
    since = iso(boundary_ms)
    assert await listed(client, since=since) == newest_first(late_b)
    until = datetime.fromtimestamp((boundary_ms - 1) / 1000, UTC).astimezone(timezone(timedelta(hours=2)))
    assert await listed(client, until=until.isoformat(timespec="milliseconds")) == newest_first(
        paid_both + users_a
    )
    assert await listed(client, since=since, until=iso(boundary_ms + 60_000), endpoint_id=b) == newest_first(late_b)
    assert await listed(client, until="1969-12-31T23:59:59Z") == []
    assert await listed(client, endpoint_id="ep_00000000000000000000000000") == []


async def test_paging_is_exact_while_new_deliveries_arrive(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    first = await send(store, 120, endpoint_ids=[eid])
    await caught_up(store, settings)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"endpoint_id": eid, "status": "pending", "limit": 25, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/deliveries", params=params, headers=ADMIN)).json()
        seen += [d["id"] for d in body["data"]]
        await send(store, 7, endpoint_ids=[eid])  # arrivals between pages
        await caught_up(store, settings)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first(first)  # each exactly once, newest first, none of the newcomers


@pytest.mark.slow
async def test_a_delivery_shows_every_attempt_with_the_receivers_answer(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    def script(n: int, _request: object) -> Reply:
        if n == 0:
            return Reply(503, {"Retry-After": "1", "X-Request-Id": "r-1"}, body="busy, come back later")
        return Reply(200, body="thanks")

    receiver = await Receiver(script).start()
    try:
        eid = await make_endpoint(store, receiver.url(), headers={"Authorization": "Bearer s3cret"})
        [did] = await send(store, 1, endpoint_ids=[eid], event_type="invoice.sent")
        async with running_worker(settings):
            await receiver.wait_for(2, timeout=15)
            while (await delivery_now(store, settings, did)).status != "succeeded":
                await asyncio.sleep(0.05)
        await caught_up(store, settings)
        response = await client.get(f"/v1/deliveries/{did}", headers=ADMIN)
    finally:
        await receiver.stop()
    assert response.status_code == 200
    detail = response.json()
    assert_matches_contract(detail, "DeliveryDetail")
    delivery = await delivery_now(store, settings, did)
    assert detail["delivery"] == delivery.to_json()
    assert delivery.status == "succeeded" and delivery.attempts == 2 and detail["next_attempt_at"] is None
    assert detail["message"] == {"id": delivery.message_id, "event_type": "invoice.sent",
                                 "created_at": iso(delivery.created_at_ms)}
    first, second = detail["attempts"]
    assert [first["number"], second["number"]] == [1, 2]
    assert first["outcome"] == "overloaded" and second["outcome"] == "succeeded"
    assert first["response"]["status"] == 503 and second["response"]["status"] == 200
    assert first["response"]["headers"]["retry-after"] == "1"
    assert first["response"]["headers"]["x-request-id"] == "r-1"
    assert first["response"]["body"] == "busy, come back later" and not first["response"]["body_truncated"]
    assert second["response"]["headers"]["content-type"].startswith("text/plain")
    assert second["response"]["body"] == "thanks"
    for attempt in (first, second):
        assert attempt["trigger"] == "scheduled" and attempt["delivery_id"] == did and attempt["error"] is None
        assert attempt["request"]["url"] == receiver.url()
        sent = attempt["request"]["headers"]
        assert sent["webhook-id"] == delivery.message_id
        assert sent["webhook-signature"] == "[redacted]" and sent["Authorization"] == "[redacted]"
        assert attempt["duration_ms"] >= 0
    # What the receiver really got carried the secrets the record hides.
    assert receiver.received[0].headers["Authorization"] == "Bearer s3cret"
    assert receiver.received[0].headers["webhook-signature"].startswith("v1,")
    assert detail["actions"] == []

    # The endpoint's attempt log holds the same two records, newest first, one page at a time.
    pages = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        answer = await client.get(f"/v1/endpoints/{eid}/attempts", params=params, headers=ADMIN)
        assert answer.status_code == 200
        assert_matches_contract(answer.json(), "AttemptPage")
        pages.append(answer.json()["data"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert [page for page in pages if page] == [[second], [first]]


@pytest.mark.slow
async def test_deliveries_being_sent_are_listed_from_redis_and_the_history_never_records_their_claim(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    slow = await Receiver(lambda _n, _r: Reply(200, delay=6.0)).start()
    try:
        sending_to = await make_endpoint(store, slow.url())
        held = await make_endpoint(store, NOWHERE, enabled=False)  # its deliveries stay pending
        in_flight = await send(store, 3, endpoint_ids=[sending_to])
        waiting = await send(store, 2, endpoint_ids=[held])
        patient = dataclasses.replace(settings, request_timeout=20.0, lease_seconds=30.0)
        async with running_worker(patient):
            await slow.wait_for(3, timeout=15)
            await caught_up(store, settings)
            # The history holds the ingest state of the three being sent, and nothing of their claim.
            history = open_history(settings.database_url or "")
            await history.open()
            try:
                for did in in_flight:
                    stored = await history.get_delivery(did)
                    assert stored is not None and (stored.delivery.status, stored.delivery.attempts) == ("pending", 0)
            finally:
                await history.close()

            assert await listed(client, status="delivering") == newest_first(in_flight)
            assert await listed(client, status="delivering", limit=1) == newest_first(in_flight)
            assert await listed(client, status="delivering,pending", limit=2) == newest_first(in_flight + waiting)
            assert await listed(client, status="pending") == newest_first(waiting)
            assert await listed(client, status="delivering", endpoint_id=held) == []
            assert await listed(client, status="delivering", endpoint_id=sending_to, limit=2) == newest_first(in_flight)
            page = (await client.get("/v1/deliveries", headers=ADMIN)).json()["data"]
            shown = {d["id"]: (d["status"], d["attempts"]) for d in page}
            assert shown == {**{did: ("delivering", 1) for did in in_flight},
                             **{did: ("pending", 0) for did in waiting}}

            await wait_until(lambda: _succeeded(store, settings, in_flight), timeout=20)
        await caught_up(store, settings)
        assert await listed(client, status="delivering") == []
        assert await listed(client, status="succeeded") == newest_first(in_flight)
    finally:
        await slow.stop()


async def test_a_lost_attempt_is_shown_as_lost(client: httpx.AsyncClient, store: Store, settings: Settings) -> None:
    """reap.lua's record for a worker that died mid-attempt has no request and no answer."""
    eid = await make_endpoint(store, NOWHERE)
    [did] = await send(store, 1, endpoint_ids=[eid])
    claim = await store.pump.claim("w-dead", horizon_ms=200, max_endpoints=10, max_deliveries=10)
    assert [d.id for d in claim.deliveries] == [did]
    await store.redis.zadd("hp:leases", {did: 0})  # its lease ran out long ago
    assert await store.pump.reap() == [did]
    await caught_up(store, settings)
    detail = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()
    assert_matches_contract(detail, "DeliveryDetail")
    [lost] = detail["attempts"]
    assert lost["outcome"] == "lost" and lost["error"]["kind"] == "lease_expired"
    assert lost["request"] is None and lost["response"] is None and lost["started_at"] is None
    assert detail["delivery"]["status"] == "retrying" and detail["next_attempt_at"] is not None


@pytest.mark.parametrize("query", [
    {"since": "yesterday"},
    {"since": "2024-05-01T12:00:00"},  # no offset
    {"until": "2024-13-01T00:00:00Z"},
    {"since": "2024-05-01T12:00:00 02:00"},  # an unescaped '+'
    {"status": "lost"},
    {"status": "pending,lost"},
    {"status": ""},
    {"limit": "0"},
    {"limit": "251"},
    {"limit": "ten"},
    {"cursor": "not-a-cursor"},
    {"endpoint_id": "ep_1"},
    {"message_id": "dlv_x"},
    {"event_type": "has space"},
    {"sort": "oldest"},
])
async def test_malformed_queries_are_422_naming_the_parameter(
    client: httpx.AsyncClient, query: dict[str, str]
) -> None:
    problem = assert_problem(await client.get("/v1/deliveries", params=query, headers=ADMIN), 422)
    assert problem["errors"][0]["field"] == next(iter(query))


async def test_a_single_valued_filter_given_twice_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/deliveries?event_type=a&event_type=b", headers=ADMIN)
    assert assert_problem(response, 422)["errors"][0]["field"] == "event_type"


async def test_unknown_deliveries_and_endpoints_are_404(client: httpx.AsyncClient) -> None:
    for path in (f"/v1/deliveries/{MISSING_DELIVERY}", "/v1/deliveries/nonsense",
                 "/v1/endpoints/ep_00000000000000000000000000/attempts", "/v1/endpoints/x/attempts"):
        assert_problem(await client.get(path, headers=ADMIN), 404)
    wrong_method = await client.get("/v1/deliveries/retry", headers=ADMIN)
    assert_problem(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"


async def test_attempt_log_limit_and_cursor_are_checked(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE)
    for query in ({"limit": "0"}, {"cursor": "%%%"}, {"status": "failed"}):
        response = await client.get(f"/v1/endpoints/{eid}/attempts", params=query, headers=ADMIN)
        assert assert_problem(response, 422)["errors"][0]["field"] == next(iter(query))
    empty = await client.get(f"/v1/endpoints/{eid}/attempts", headers=ADMIN)
    assert empty.json() == {"data": [], "next_cursor": None}


async def _succeeded(store: Store, settings: Settings, dids: list[str]) -> bool:
    return (await statuses(store, dids, settings)).get("succeeded", 0) == len(dids)
