"""/v1/messages through the HTTP API: 202 answers, fan-out, explicit targets, idempotency, batches,
reading a message back, and the keys the pump reads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from core import keys
from core.ids import new_id
from core.models import iso
from core.settings import Settings
from core.store import NewMessage, Store
from tests.api import ADMIN, api_client, assert_problem, create_endpoint, snapshot

MISSING_ENDPOINT = "ep_00000000000000000000000000"


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def send(client: httpx.AsyncClient, body: object, **headers: str) -> httpx.Response:
    return await client.post("/v1/messages", json=body, headers={**ADMIN, **headers})


async def test_accepted_message_answers_202_with_its_deliveries(client: httpx.AsyncClient) -> None:
    eid = (await create_endpoint(client))["id"]
    response = await send(client, {"event_type": "order.paid", "payload": {"total": 12.5, "items": [1, 2]}})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "event_type", "created_at", "deliveries"}
    assert body["id"].startswith("msg_") and body["event_type"] == "order.paid"
    assert body["created_at"].endswith("Z")
    assert response.headers["location"] == f"/v1/messages/{body['id']}"
    assert "idempotent-replayed" not in response.headers
    [delivery] = body["deliveries"]
    assert delivery["endpoint_id"] == eid and delivery["status"] == "pending"
    assert delivery["id"].startswith("dlv_")


async def test_fan_out_follows_event_type_filters_and_skips_disabled(client: httpx.AsyncClient) -> None:
    a = (await create_endpoint(client, event_types=["order.paid"]))["id"]
    b = (await create_endpoint(client))["id"]
    await create_endpoint(client, event_types=["user.created"])
    await create_endpoint(client, enabled=False)
    body = (await send(client, {"event_type": "order.paid", "payload": None})).json()
    assert sorted(d["endpoint_id"] for d in body["deliveries"]) == sorted([a, b])


async def test_no_subscriber_means_no_deliveries(client: httpx.AsyncClient) -> None:
    await create_endpoint(client, event_types=["user.created"])
    response = await send(client, {"event_type": "order.paid", "payload": "x"})
    assert response.status_code == 202 and response.json()["deliveries"] == []


async def test_explicit_endpoint_ids_override_the_filters(client: httpx.AsyncClient) -> None:
    a = (await create_endpoint(client, event_types=["user.created"]))["id"]
    await create_endpoint(client)
    body = (await send(client, {"event_type": "order.paid", "payload": {}, "endpoint_ids": [a]})).json()
    assert [d["endpoint_id"] for d in body["deliveries"]] == [a]


async def test_unknown_endpoint_id_is_422_and_stores_nothing(client: httpx.AsyncClient, store: Store) -> None:
    a = (await create_endpoint(client))["id"]
    before = await snapshot(store)
    response = await send(client, {"event_type": "order.paid", "payload": {}, "endpoint_ids": [a, MISSING_ENDPOINT]})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "endpoint_ids"
    assert MISSING_ENDPOINT in problem["detail"]
    assert await snapshot(store) == before


async def test_deleted_endpoint_id_is_unknown(client: httpx.AsyncClient) -> None:
    a = (await create_endpoint(client))["id"]
    await client.delete(f"/v1/endpoints/{a}", headers=ADMIN)
    assert_problem(await send(client, {"event_type": "e", "payload": 1, "endpoint_ids": [a]}), 422)


async def test_idempotent_repeat_replays_the_first_answer_and_stores_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    await create_endpoint(client)
    body = {"event_type": "order.paid", "payload": {"a": 1, "b": [True, None]}}
    first = await send(client, body, **{"Idempotency-Key": "order-17"})
    assert first.status_code == 202
    before = await snapshot(store)
    # Same body, other key order and spacing: the same request.
    again = await client.post(
        "/v1/messages", content=b'{"payload": {"b": [true, null], "a": 1}, "event_type": "order.paid"}',
        headers={**ADMIN, "Content-Type": "application/json", "Idempotency-Key": "order-17"},
    )
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await snapshot(store) == before
    assert len(await store.redis.keys("hp:msg:*")) == 2  # the message's hash and its payload


async def test_idempotency_key_reused_with_another_body_is_409(client: httpx.AsyncClient, store: Store) -> None:
    await send(client, {"event_type": "a", "payload": 1}, **{"Idempotency-Key": "k1"})
    before = await snapshot(store)
    response = await send(client, {"event_type": "a", "payload": 2}, **{"Idempotency-Key": "k1"})
    assert "Idempotency-Key" in assert_problem(response, 409)["detail"]
    assert await snapshot(store) == before


async def test_idempotency_keys_are_scoped_per_api_key(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/api-keys", json={"name": "s", "scopes": ["send"]}, headers=ADMIN)
    sender = {"Authorization": f"Bearer {created.json()['key']}"}
    first = await send(client, {"event_type": "a", "payload": 1}, **{"Idempotency-Key": "same"})
    other = await client.post("/v1/messages", json={"event_type": "a", "payload": 2},
                              headers={**sender, "Idempotency-Key": "same"})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


async def test_batch_of_500_is_accepted_in_order(client: httpx.AsyncClient, store: Store) -> None:
    eid = (await create_endpoint(client))["id"]
    messages = [{"event_type": "order.paid", "payload": {"n": i}} for i in range(500)]
    response = await client.post("/v1/messages/batch", json={"messages": messages}, headers=ADMIN)
    assert response.status_code == 202
    accepted = response.json()["messages"]
    assert len(accepted) == 500
    ids = [m["id"] for m in accepted]
    assert len(set(ids)) == 500 and ids == sorted(ids)  # ids sort by creation: request order
    assert all([d["endpoint_id"] for d in m["deliveries"]] == [eid] for m in accepted)
    assert await store.redis.zcard(keys.due(eid)) == 500
    for i in (0, 137, 499):
        read = (await client.get(f"/v1/messages/{ids[i]}", headers=ADMIN)).json()
        assert read["payload"] == {"n": i}


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient, store: Store) -> None:
    eid = (await create_endpoint(client))["id"]
    before = await snapshot(store)
    messages = [{"event_type": "a", "payload": 1, "endpoint_ids": [eid]},
                {"event_type": "a", "payload": 2, "endpoint_ids": [MISSING_ENDPOINT]}]
    response = await client.post("/v1/messages/batch", json={"messages": messages}, headers=ADMIN)
    assert assert_problem(response, 422)["errors"][0]["field"] == "messages[1].endpoint_ids"
    assert await snapshot(store) == before


async def test_batch_idempotency_replays(client: httpx.AsyncClient) -> None:
    body = {"messages": [{"event_type": "a", "payload": i} for i in range(3)]}
    headers = {**ADMIN, "Idempotency-Key": "batch-1"}
    first = await client.post("/v1/messages/batch", json=body, headers=headers)
    again = await client.post("/v1/messages/batch", json=body, headers=headers)
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_get_message_shows_payload_and_full_deliveries(client: httpx.AsyncClient) -> None:
    eid = (await create_endpoint(client))["id"]
    payload = {"emoji": "\u00e9\U0001f600", "n": [1, 2.5, None], "deep": {"x": {"y": True}}}
    sent = (await send(client, {"event_type": "order.paid", "payload": payload})).json()
    response = await client.get(f"/v1/messages/{sent['id']}", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == sent["id"] and body["event_type"] == "order.paid"
    assert body["payload"] == payload and body["created_at"] == sent["created_at"]
    [delivery] = body["deliveries"]
    assert delivery == {
        "id": sent["deliveries"][0]["id"], "message_id": sent["id"], "endpoint_id": eid,
        "event_type": "order.paid", "status": "pending", "attempts": 0, "created_at": sent["created_at"],
        "updated_at": sent["created_at"], "next_attempt_at": sent["created_at"], "last_status_code": None,
        "last_error": None,
    }


async def test_accepted_delivery_is_where_the_pump_looks(client: httpx.AsyncClient, store: Store) -> None:
    eid = (await create_endpoint(client))["id"]
    body = (await send(client, {"event_type": "order.paid", "payload": {}})).json()
    did = body["deliveries"][0]["id"]
    assert await store.redis.zscore(keys.due(eid), did) is not None
    assert await store.redis.zscore(keys.ACTIVE, eid) is not None
    assert await store.redis.hget(keys.delivery(did), "status") == "pending"


async def test_a_pending_delivery_is_stored_in_compact_hashes_that_the_api_reads_back(
    client: httpx.AsyncClient, store: Store
) -> None:
    """Redis memory per pending delivery (issue 10): nothing the ids or the message already say is
    stored twice, and both hashes keep the listpack encoding (the payload is a string of its own)."""
    eid = (await create_endpoint(client))["id"]
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    accepted = await store.messages.ingest([NewMessage("order.paid", '{"n":"' + "x" * 300 + '"}', [eid], trace)])
    mid, did = accepted.messages[0]["id"], accepted.messages[0]["deliveries"][0]["id"]
    # No history version yet: the message's outbox entry stands for the pending state (version 0).
    assert set(await store.redis.hgetall(keys.delivery(did))) == {"eid", "status", "updated_ms", "due_ms"}
    assert await store.redis.hgetall(keys.message(mid)) == {
        "event_type": "order.paid", "fanout": "1", "remaining": "1", "trace": trace}
    compact = {"listpack", "ziplist"}  # Redis 7, Redis 6.2 (the embedded server `hookpump dev` may run)
    assert await store.redis.object("encoding", keys.delivery(did)) in compact
    assert await store.redis.object("encoding", keys.message(mid)) in compact
    delivery = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()["delivery"]
    assert (delivery["message_id"], delivery["event_type"], delivery["created_at"]) == (
        mid, "order.paid", iso(accepted.messages[0]["created_ms"]))
    message = (await client.get(f"/v1/messages/{mid}", headers=ADMIN)).json()
    assert message["payload"] == {"n": "x" * 300} and [d["id"] for d in message["deliveries"]] == [did]


async def test_payload_is_stored_as_compact_json(client: httpx.AsyncClient, store: Store) -> None:
    await create_endpoint(client)
    response = await client.post(
        "/v1/messages", content='{"event_type": "a", "payload": { "k" : [1, 2], "t": "\u00e9" }}'.encode(),
        headers={**ADMIN, "Content-Type": "application/json; charset=utf-8"},
    )
    mid = response.json()["id"]
    assert await store.redis.get(keys.message_payload(mid)) == '{"k":[1,2],"t":"\u00e9"}'


async def test_a_message_and_delivery_an_older_version_wrote_are_still_sent_and_read(
    client: httpx.AsyncClient, store: Store
) -> None:
    """Redis may hold deliveries from before the compact layout when hookpump is upgraded: the
    payload inside the message hash, the ids as a list, fields the ids now say."""
    eid = (await create_endpoint(client))["id"]
    now = int(time.time() * 1000)
    mid = new_id("msg", now)
    did = f"dlv_{mid[4:]}_1"
    await store.redis.hset(keys.message(mid), mapping={
        "event_type": "order.paid", "payload": '{"old":true}', "created_ms": now, "deliveries": did,
        "remaining": 1, "trace": ""})
    await store.redis.hset(keys.delivery(did), mapping={
        "mid": mid, "eid": eid, "event_type": "order.paid", "status": "pending", "attempts": 0, "created_ms": now,
        "updated_ms": now, "due_ms": now, "budget_ms": now, "trigger": "scheduled", "v": 1})
    await store.redis.zadd(keys.due(eid), {did: now})
    await store.redis.zadd(keys.ACTIVE, {eid: now})
    message = (await client.get(f"/v1/messages/{mid}", headers=ADMIN)).json()
    assert message["payload"] == {"old": True} and [d["id"] for d in message["deliveries"]] == [did]
    claim = await store.pump.claim("w", horizon_ms=200, max_endpoints=10, max_deliveries=10)
    [claimed] = claim.deliveries
    assert (claimed.id, claimed.message_id, claimed.payload_json, claimed.event_type, claimed.trigger) == (
        did, mid, '{"old":true}', "order.paid", "scheduled")
    assert claimed.budget_start_ms == now and claimed.attempt == 1
