"""/v1/api-keys: keys made through the API work with exactly their scopes, are listed without the
key itself, and stop working once deleted."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request

from core.settings import Settings
from core.store import Store
from service.auth import CACHE_SECONDS, Authenticator
from service.problems import Problem
from tests.api import ADMIN, api_client, assert_problem, bearer, create_endpoint


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def make_key(client: httpx.AsyncClient, name: str, scopes: list[str]) -> dict[str, object]:
    response = await client.post("/v1/api-keys", json={"name": name, "scopes": scopes}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_created_key_is_shown_once_and_listed_without_it(client: httpx.AsyncClient, store: Store) -> None:
    created = await make_key(client, "monitoring", ["read"])
    assert set(created) == {"id", "name", "scopes", "created_at", "key"}
    assert created["scopes"] == ["read"] and created["name"] == "monitoring"
    key = str(created["key"])
    assert key.startswith("hp_")
    listed = await client.get("/v1/api-keys", headers=ADMIN)
    assert listed.status_code == 200
    assert key not in listed.text
    assert listed.json() == {"data": [{k: v for k, v in created.items() if k != "key"}], "next_cursor": None}
    # Only the digest is stored.
    stored = [await store.redis.dump(k) for k in await store.redis.keys("*")]
    assert not any(key.encode() in (value or b"") for value in stored)


async def test_read_key_reads_but_cannot_send_or_administer(client: httpx.AsyncClient) -> None:
    eid = (await create_endpoint(client))["id"]
    sent = await client.post("/v1/messages", json={"event_type": "a", "payload": 1}, headers=ADMIN)
    reader = bearer(str((await make_key(client, "r", ["read"]))["key"]))
    assert (await client.get("/v1/endpoints", headers=reader)).status_code == 200
    assert (await client.get(f"/v1/endpoints/{eid}", headers=reader)).status_code == 200
    assert (await client.get(f"/v1/messages/{sent.json()['id']}", headers=reader)).status_code == 200
    assert_problem(await client.post("/v1/messages", json={"event_type": "a", "payload": 1}, headers=reader), 403)
    assert_problem(await client.patch(f"/v1/endpoints/{eid}", json={"enabled": False}, headers=reader), 403)
    assert_problem(await client.get("/v1/api-keys", headers=reader), 403)


async def test_send_key_sends_and_reads_messages_only(client: httpx.AsyncClient) -> None:
    eid = (await create_endpoint(client))["id"]
    sender = bearer(str((await make_key(client, "s", ["send"]))["key"]))
    sent = await client.post("/v1/messages", json={"event_type": "a", "payload": 1}, headers=sender)
    assert sent.status_code == 202 and sent.json()["deliveries"][0]["endpoint_id"] == eid
    batch = await client.post("/v1/messages/batch", json={"messages": [{"event_type": "a", "payload": 2}]},
                              headers=sender)
    assert batch.status_code == 202
    assert (await client.get(f"/v1/messages/{sent.json()['id']}", headers=sender)).status_code == 200
    assert_problem(await client.get("/v1/endpoints", headers=sender), 403)
    assert_problem(await client.post("/v1/endpoints", json={"url": "https://x.test/"}, headers=sender), 403)
    assert_problem(await client.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=sender), 403)


async def test_created_admin_key_can_do_everything(client: httpx.AsyncClient) -> None:
    admin = bearer(str((await make_key(client, "ops", ["admin"]))["key"]))
    assert (await client.post("/v1/endpoints", json={"url": "https://x.test/"}, headers=admin)).status_code == 201
    assert (await client.post("/v1/messages", json={"event_type": "a", "payload": 1}, headers=admin)).status_code == 202
    assert (await client.get("/v1/api-keys", headers=admin)).status_code == 200


async def test_deleted_key_stops_working(client: httpx.AsyncClient) -> None:
    created = await make_key(client, "temp", ["send", "read"])
    key = bearer(str(created["key"]))
    assert (await client.get("/v1/endpoints", headers=key)).status_code == 200  # now cached
    response = await client.delete(f"/v1/api-keys/{created['id']}", headers=ADMIN)
    assert response.status_code == 204
    assert_problem(await client.get("/v1/endpoints", headers=key), 401)
    assert (await client.get("/v1/api-keys", headers=ADMIN)).json()["data"] == []
    assert_problem(await client.delete(f"/v1/api-keys/{created['id']}", headers=ADMIN), 404)


async def test_any_valid_key_learns_who_it_is_and_never_sees_the_key_itself(client: httpx.AsyncClient) -> None:
    for scopes in (["send"], ["read"], ["read", "admin"]):
        created = await make_key(client, "wordpress " + "+".join(scopes), scopes)
        response = await client.get("/v1/api-keys/me", headers=bearer(str(created["key"])))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["service"] == "hookpump" and re.fullmatch(r"\d+\.\d+\.\d+.*", body["version"])
        assert body["key"] == {**{k: v for k, v in created.items() if k != "key"}, "bootstrap": False}
        assert str(created["key"]) not in response.text
    bootstrap = (await client.get("/v1/api-keys/me", headers=ADMIN)).json()["key"]
    assert bootstrap == {"id": "bootstrap", "name": "bootstrap", "scopes": ["admin"], "created_at": None,
                         "bootstrap": True}  # fmt: skip


async def test_who_am_i_refuses_a_missing_or_unknown_key_and_does_not_clash_with_key_ids(
    client: httpx.AsyncClient,
) -> None:
    assert_problem(await client.get("/v1/api-keys/me"), 401)
    assert_problem(await client.get("/v1/api-keys/me", headers=bearer("hp_unknown")), 401)
    # "me" is a route of its own, not an alias of the caller's key id: deleting it deletes nothing.
    ops = await make_key(client, "ops", ["admin"])
    refused = await client.delete("/v1/api-keys/me", headers=bearer(str(ops["key"])))
    assert_problem(refused, 405)
    assert refused.headers["allow"] == "GET"
    assert (await client.get("/v1/api-keys/me", headers=bearer(str(ops["key"])))).json()["key"]["id"] == ops["id"]
    assert (await client.delete(f"/v1/api-keys/{ops['id']}", headers=ADMIN)).status_code == 204


async def test_key_deleted_elsewhere_works_until_the_cache_expires(store: Store) -> None:
    now = [1000.0]
    auth = Authenticator("bootstrap-key", store.api_keys, clock=lambda: now[0])
    key, plaintext = await store.api_keys.create("k", frozenset())
    request = _request_with(plaintext)
    assert (await auth.principal(request)).id == key.id
    await store.api_keys.delete(key.id)  # as another API process would
    assert (await auth.principal(request)).id == key.id
    now[0] += CACHE_SECONDS + 0.1
    with pytest.raises(Problem, match="unknown or was deleted"):
        await auth.principal(request)


async def test_api_keys_page(client: httpx.AsyncClient) -> None:
    made = [(await make_key(client, f"k{i}", ["read"]))["id"] for i in range(5)]
    first = (await client.get("/v1/api-keys", params={"limit": 2}, headers=ADMIN)).json()
    second = (await client.get("/v1/api-keys", params={"limit": 3, "cursor": first["next_cursor"]},
                               headers=ADMIN)).json()
    assert [k["id"] for k in first["data"] + second["data"]] == made
    assert second["next_cursor"] is None


def _request_with(key: str) -> Request:
    headers = [(b"authorization", f"Bearer {key}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


async def test_the_key_cache_evicts_its_least_recently_used_entry(store: Store) -> None:
    auth = Authenticator(None, store.api_keys, cache_limit=3, clock=lambda: 1000.0)
    made = [await store.api_keys.create(f"k{n}", frozenset()) for n in range(3)]
    for key, plaintext in made:
        assert (await auth.principal(_request_with(plaintext))).id == key.id
    for key, _ in made:
        await store.api_keys.delete(key.id)  # as another process would: from now on only the cache knows them
    await auth.principal(_request_with(made[0][1]))  # k0 used again: k1 is now the least recently used
    with pytest.raises(Problem):
        await auth.principal(_request_with("hp_made-up-key"))  # a fourth entry: k1 goes
    assert (await auth.principal(_request_with(made[0][1]))).id == made[0][0].id
    assert (await auth.principal(_request_with(made[2][1]))).id == made[2][0].id
    with pytest.raises(Problem, match="unknown or was deleted"):
        await auth.principal(_request_with(made[1][1]))


async def test_a_flood_of_made_up_keys_does_not_evict_a_key_in_use(store: Store) -> None:
    """What is provable: a key used at least once in every (limit - 1) new keys keeps its entry, however
    many made-up keys arrive (the cache used to be emptied whenever it filled)."""
    auth = Authenticator(None, store.api_keys, cache_limit=100, clock=lambda: 1000.0)
    key, plaintext = await store.api_keys.create("hot", frozenset())
    hot = _request_with(plaintext)
    assert (await auth.principal(hot)).id == key.id
    await store.api_keys.delete(key.id)  # only the cache knows it now: an eviction would make it fail
    for n in range(1000):
        with pytest.raises(Problem):
            await auth.principal(_request_with(f"hp_made-up-{n}"))
        if n % 50 == 49:
            assert (await auth.principal(hot)).id == key.id, f"evicted after {n + 1} made-up keys"
