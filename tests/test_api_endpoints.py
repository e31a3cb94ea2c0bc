"""/v1/endpoints through the HTTP API: CRUD, paging, secrets shown once, rotation, refused targets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core import keys
from core.settings import Settings
from core.store import Store
from delivery.signing import generate_secret, sign
from tests.api import ADMIN, api_client, assert_problem, create_endpoint, snapshot


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def test_create_answers_201_with_defaults_and_the_secret(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/endpoints", json={"url": "https://receiver.test/hook"}, headers=ADMIN)
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/endpoints/{body['id']}"
    assert body["id"].startswith("ep_")
    assert body["secret"].startswith("whsec_")
    assert {k: body[k] for k in ("url", "rate_limit_per_minute", "max_in_flight", "event_types", "headers",
                                 "description", "enabled", "trace_propagation", "disabled_reason")} == {
        "url": "https://receiver.test/hook", "rate_limit_per_minute": 60, "max_in_flight": 10,
        "event_types": None, "headers": {}, "description": "", "enabled": True, "trace_propagation": True,
        "disabled_reason": None,
    }
    assert body["created_at"].endswith("Z")


async def test_create_keeps_every_given_field(client: httpx.AsyncClient, store: Store) -> None:
    secret = generate_secret()
    fields: dict[str, Any] = {
        "url": "http://receiver.test:8080/in?x=1", "rate_limit_per_minute": 60000, "max_in_flight": 1000,
        "event_types": ["order.paid", "user:created"], "headers": {"Authorization": "Bearer abc"},
        "description": "orders", "enabled": False, "trace_propagation": False, "secret": secret,
        "secret_headers": ["x-pin"],
    }
    body = await create_endpoint(client, **fields)
    # The credential is stored, never echoed (tests/test_header_secrecy.py).
    assert {k: body[k] for k in fields} == {**fields, "headers": {"Authorization": "[redacted]"}}
    stored = await store.endpoints.get(body["id"])
    assert [s.value for s in stored.secrets] == [secret]
    assert stored.headers == {"Authorization": "Bearer abc"}


async def test_secret_is_never_shown_again(client: httpx.AsyncClient) -> None:
    created = await create_endpoint(client)
    eid = created["id"]
    answers = [
        await client.get(f"/v1/endpoints/{eid}", headers=ADMIN),
        await client.get("/v1/endpoints", headers=ADMIN),
        await client.patch(f"/v1/endpoints/{eid}", json={"description": "changed"}, headers=ADMIN),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert "whsec_" not in answer.text
        assert '"secret"' not in answer.text and '"secrets"' not in answer.text  # (secret_headers is names)
    assert answers[0].json() == {**{k: v for k, v in created.items() if k != "secret"}}


async def test_list_pages_through_every_endpoint_exactly_once(client: httpx.AsyncClient) -> None:
    created = [(await create_endpoint(client, description=f"n{i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/endpoints", params=params, headers=ADMIN)
        assert response.status_code == 200
        page = response.json()
        assert len(page["data"]) <= 3
        seen += [e["id"] for e in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created  # oldest first, each once
    assert pages == 3


async def test_patch_changes_only_given_fields_and_the_fanout(client: httpx.AsyncClient, store: Store) -> None:
    eid = (await create_endpoint(client, event_types=["a.b"]))["id"]
    assert await store.redis.smembers(keys.event_type("a.b")) == {eid}
    response = await client.patch(f"/v1/endpoints/{eid}", json={"event_types": None, "rate_limit_per_minute": 5},
                                  headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["event_types"] is None and body["rate_limit_per_minute"] == 5 and body["max_in_flight"] == 10
    assert await store.redis.smembers(keys.event_type("a.b")) == set()
    assert await store.redis.smembers(keys.EVENT_ALL) == {eid}


async def test_delete_answers_204_and_the_endpoint_is_gone(client: httpx.AsyncClient) -> None:
    eid = (await create_endpoint(client))["id"]
    response = await client.delete(f"/v1/endpoints/{eid}", headers=ADMIN)
    assert response.status_code == 204 and response.content == b""
    assert_problem(await client.get(f"/v1/endpoints/{eid}", headers=ADMIN), 404)
    assert_problem(await client.delete(f"/v1/endpoints/{eid}", headers=ADMIN), 404)
    assert_problem(await client.patch(f"/v1/endpoints/{eid}", json={}, headers=ADMIN), 404)
    listed = (await client.get("/v1/endpoints", headers=ADMIN)).json()
    assert listed["data"] == []


async def test_rotate_returns_a_new_secret_and_both_keep_signing(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    created = await create_endpoint(client)
    eid, old = created["id"], created["secret"]
    response = await client.post(f"/v1/endpoints/{eid}/secret/rotate", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    new = body["secret"]
    assert new.startswith("whsec_") and new != old
    raw = await store.redis.hget(keys.endpoint(eid), "secrets")
    stored = json.loads(raw)
    assert [s[0] for s in stored] == [new, old]
    assert stored[0][2] is None  # the new one does not expire
    grace_ms = stored[1][2] - stored[0][1]
    assert abs(grace_ms - settings.secret_grace * 1000) < 5000
    assert body["previous_secrets_valid_until"].endswith("Z")
    # Both secrets sign: one v1 entry each.
    signature = sign([s[0] for s in stored], "msg_x", 1700000000, b"{}")
    assert len(signature.split(" ")) == 2
    assert "whsec_" not in (await client.get(f"/v1/endpoints/{eid}", headers=ADMIN)).text


async def test_rotate_accepts_a_given_secret_and_refuses_a_malformed_one(
    client: httpx.AsyncClient, store: Store
) -> None:
    eid = (await create_endpoint(client))["id"]
    given = generate_secret()
    response = await client.post(f"/v1/endpoints/{eid}/secret/rotate", json={"secret": given}, headers=ADMIN)
    assert response.json()["secret"] == given
    before = await snapshot(store)
    bad = await client.post(f"/v1/endpoints/{eid}/secret/rotate", json={"secret": "whsec_!!"}, headers=ADMIN)
    assert assert_problem(bad, 422)["errors"][0]["field"] == "secret"
    assert await snapshot(store) == before


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook",
    "http://localhost:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/hook",
    "http://[::1]:9000/hook",
])
async def test_private_targets_are_refused_unless_allowed(
    url: str, store: Store, settings: Settings
) -> None:
    async with api_client(settings.replace(allow_private_targets=False)) as client:
        before = await snapshot(store)
        response = await client.post("/v1/endpoints", json={"url": url}, headers=ADMIN)
        body = assert_problem(response, 422)
        assert body["type"].endswith("/forbidden-target")
        assert body["errors"][0]["field"] == "url"
        assert "private targets is off" in body["detail"]
        assert await snapshot(store) == before
    async with api_client(settings.replace(allow_private_targets=True)) as client:
        response = await client.post("/v1/endpoints", json={"url": url}, headers=ADMIN)
        assert response.status_code == 201


async def test_patch_to_a_private_target_is_refused(store: Store, settings: Settings) -> None:
    async with api_client(settings.replace(allow_private_targets=False)) as client:
        eid = (await create_endpoint(client, url="https://93.184.215.14/hook"))["id"]
        before = await snapshot(store)
        response = await client.patch(f"/v1/endpoints/{eid}", json={"url": "http://10.1.2.3/"}, headers=ADMIN)
        assert assert_problem(response, 422)["type"].endswith("/forbidden-target")
        assert await snapshot(store) == before


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://receiver.test/hook", "scheme must be http or https"),
    ("javascript:alert(1)", "scheme must be http or https"),
    ("https://user:pass@receiver.test/hook", "credentials"),
    ("https://receiver.test/ho ok", "whitespace"),
    ("", "non-empty"),
])
async def test_malformed_urls_are_refused(url: str, says: str, client: httpx.AsyncClient, store: Store) -> None:
    before = await snapshot(store)
    body = assert_problem(await client.post("/v1/endpoints", json={"url": url}, headers=ADMIN), 422)
    assert body["errors"] == [{"field": "url", "message": body["errors"][0]["message"]}]
    assert says in body["errors"][0]["message"]
    assert await snapshot(store) == before


async def test_patch_cannot_change_the_secret(client: httpx.AsyncClient) -> None:
    eid = (await create_endpoint(client))["id"]
    response = await client.patch(f"/v1/endpoints/{eid}", json={"secret": generate_secret()}, headers=ADMIN)
    assert "rotate" in assert_problem(response, 422)["detail"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"max_in_flight": 0}, "max_in_flight"),
    ({"max_in_flight": 1001}, "max_in_flight"),
    ({"rate_limit_per_minute": True}, "rate_limit_per_minute"),
    ({"rate_limit_per_minute": 1.5}, "rate_limit_per_minute"),
    ({"event_types": []}, "event_types"),
    ({"event_types": ["a", "a"]}, "event_types"),
    ({"event_types": ["has space"]}, "event_types[0]"),
    ({"headers": {"Content-Type": "text/plain"}}, "headers"),
    ({"headers": {"X-A": "line\nbreak"}}, "headers"),
    ({"description": "x" * 1025}, "description"),
    ({"enabled": "yes"}, "enabled"),
    ({"secret": "not-a-secret"}, "secret"),
    ({"colour": "blue"}, "colour"),
])
async def test_invalid_fields_are_named(
    fields: dict[str, object], field: str, client: httpx.AsyncClient, store: Store
) -> None:
    before = await snapshot(store)
    body = {"url": "https://receiver.test/hook", **fields}
    problem = assert_problem(await client.post("/v1/endpoints", json=body, headers=ADMIN), 422)
    assert problem["errors"][0]["field"] == field
    assert await snapshot(store) == before
