"""Every refusal of the API: status, application/problem+json with an actionable detail, and Redis
left exactly as it was (every key's type and serialized value compared before and after)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from core import keys
from core.models import Scope
from core.settings import Settings
from core.store import Store
from service.app import create_app
from tests.api import ADMIN, ADMIN_KEY, api_client, assert_problem, bearer, snapshot

MAX_PAYLOAD = 120_000  # room for a 50,000-level nesting, small enough to exceed quickly
MAX_BATCH = 3
MISSING_ENDPOINT = "ep_00000000000000000000000000"
MISSING_MESSAGE = "msg_00000000000000000000000000"
MISSING_KEY = "key_00000000000000000000000000"
JSON = {"Content-Type": "application/json"}


@dataclass
class World:
    client: httpx.AsyncClient
    store: Store
    endpoint_id: str
    keys: dict[str, str]  # scope -> plaintext key


@pytest.fixture
async def world(store: Store, settings: Settings) -> AsyncIterator[World]:
    small = settings.replace(max_payload_bytes=MAX_PAYLOAD, max_batch_messages=MAX_BATCH)
    async with api_client(small) as client:
        created = await client.post("/v1/endpoints", json={"url": "https://receiver.test/"}, headers=ADMIN)
        keys = {scope: (await store.api_keys.create(scope, frozenset({Scope(scope)})))[1] for scope in ("read", "send")}
        await client.post("/v1/messages", json={"event_type": "a", "payload": 1},
                          headers={**ADMIN, "Idempotency-Key": "used"})
        yield World(client, store, created.json()["id"], keys)


@dataclass
class Case:
    name: str
    method: str
    path: str
    status: int
    body: Any = None  # JSON-encoded unless `raw` is given
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: str | None = "admin"  # "admin", "read", "send", a literal key, or None for no header
    says: str = ""  # a fragment the detail must contain

    def __str__(self) -> str:
        return self.name


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


CASES = [
    # 400
    Case("malformed json", "POST", "/v1/messages", 400, raw=b'{"event_type": "a", "payload": }', headers=JSON,
         says="not valid JSON"),
    Case("malformed json on endpoints", "POST", "/v1/endpoints", 400, raw=b"{'url': 1}", headers=JSON),
    Case("non-utf8 body", "POST", "/v1/messages", 400, raw=b'{"event_type": "a", "payload": "\xff\xfe"}',
         headers=JSON, says="UTF-8"),
    Case("utf-16 body", "POST", "/v1/messages", 400, raw='{"event_type": "a", "payload": 1}'.encode("utf-16"),
         headers=JSON, says="UTF-8"),
    Case("empty body", "POST", "/v1/messages", 400, raw=b"", headers=JSON, says="empty"),
    # The body of these may be left out, but when sent it is an object: JSON null is not "no body".
    Case("null body on pause", "POST", "/v1/endpoints/{eid}/pause", 400, raw=b"null", headers=JSON, says="null"),
    Case("null body on rotate", "POST", "/v1/endpoints/{eid}/secret/rotate", 400, raw=b"null", headers=JSON,
         says="null"),
    Case("NaN is not JSON", "POST", "/v1/messages", 400, raw=b'{"event_type": "a", "payload": NaN}', headers=JSON),
    # 401
    Case("no key", "POST", "/v1/messages", 401, body={"event_type": "a", "payload": 1}, auth=None,
         says="Authorization"),
    Case("unknown key", "POST", "/v1/messages", 401, body={"event_type": "a", "payload": 1}, auth="hp_nope"),
    Case("unknown key on endpoints", "GET", "/v1/endpoints", 401, auth="hp_nope"),
    Case("basic auth", "GET", "/v1/endpoints", 401, auth=None, headers={"Authorization": f"Basic {ADMIN_KEY}"}),
    # 403
    Case("read key sends", "POST", "/v1/messages", 403, body={"event_type": "a", "payload": 1}, auth="read",
         says="'send'"),
    Case("read key sends a batch", "POST", "/v1/messages/batch", 403,
         body={"messages": [{"event_type": "a", "payload": 1}]}, auth="read", says="'send'"),
    Case("read key creates endpoint", "POST", "/v1/endpoints", 403, body={"url": "https://x.test/"}, auth="read",
         says="'admin'"),
    Case("send key creates endpoint", "POST", "/v1/endpoints", 403, body={"url": "https://x.test/"}, auth="send",
         says="'admin'"),
    Case("send key lists endpoints", "GET", "/v1/endpoints", 403, auth="send", says="'read'"),
    Case("send key deletes endpoint", "DELETE", "/v1/endpoints/{eid}", 403, auth="send"),
    Case("read key rotates secret", "POST", "/v1/endpoints/{eid}/secret/rotate", 403, auth="read"),
    Case("read key lists api keys", "GET", "/v1/api-keys", 403, auth="read", says="'admin'"),
    Case("send key creates api key", "POST", "/v1/api-keys", 403, body={"name": "x", "scopes": ["admin"]},
         auth="send"),
    # 404
    Case("unknown endpoint", "GET", f"/v1/endpoints/{MISSING_ENDPOINT}", 404, says=MISSING_ENDPOINT),
    Case("malformed endpoint id", "GET", "/v1/endpoints/ep_x:flow", 404),
    Case("unknown endpoint patch", "PATCH", f"/v1/endpoints/{MISSING_ENDPOINT}", 404, body={"description": "x"}),
    Case("unknown endpoint delete", "DELETE", f"/v1/endpoints/{MISSING_ENDPOINT}", 404),
    Case("unknown endpoint rotate", "POST", f"/v1/endpoints/{MISSING_ENDPOINT}/secret/rotate", 404),
    Case("unknown message", "GET", f"/v1/messages/{MISSING_MESSAGE}", 404, says=MISSING_MESSAGE),
    Case("unknown api key", "DELETE", f"/v1/api-keys/{MISSING_KEY}", 404),
    Case("unknown route", "GET", "/v1/nothing-here", 404, says="/v1/nothing-here"),
    Case("trailing slash", "GET", "/v1/endpoints/", 404),
    # 405
    Case("delete messages", "DELETE", "/v1/messages", 405, says="POST"),
    Case("put endpoint", "PUT", "/v1/endpoints/{eid}", 405, body={}, says="PATCH"),
    Case("get batch", "GET", "/v1/messages/batch", 405, says="POST"),
    # 409
    Case("idempotency conflict", "POST", "/v1/messages", 409, body={"event_type": "a", "payload": 2},
         headers={"Idempotency-Key": "used"}, says="Idempotency-Key"),
    # 413
    Case("body over the limit", "POST", "/v1/messages", 413, body={"event_type": "a", "payload": "x" * MAX_PAYLOAD},
         says=str(MAX_PAYLOAD)),
    Case("endpoint body over the limit", "POST", "/v1/endpoints", 413,
         body={"url": "https://x.test/", "description": "x" * MAX_PAYLOAD}),
    Case("batch body over the limit", "POST", "/v1/messages/batch", 413,
         body={"messages": [{"event_type": "a", "payload": "x" * 100_000}] * 4}),
    Case("batch payload over the limit", "POST", "/v1/messages/batch", 413,
         body={"messages": [{"event_type": "a", "payload": 1}, {"event_type": "a", "payload": "x" * MAX_PAYLOAD}]},
         says="messages[1].payload"),
    # 415
    Case("text/plain", "POST", "/v1/messages", 415, raw=b'{"event_type": "a", "payload": 1}',
         headers={"Content-Type": "text/plain"}, says="application/json"),
    Case("no content type", "POST", "/v1/endpoints", 415, raw=b'{"url": "https://x.test/"}'),
    Case("form on patch", "PATCH", "/v1/endpoints/{eid}", 415, raw=b"enabled=false",
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("text on rotate", "POST", "/v1/endpoints/{eid}/secret/rotate", 415, raw=b"{}",
         headers={"Content-Type": "text/plain"}),
    # 422
    Case("bad url scheme", "POST", "/v1/endpoints", 422, body={"url": "ftp://x.test/"}, says="url"),
    Case("rate limit 0", "POST", "/v1/endpoints", 422, body={"url": "https://x.test/", "rate_limit_per_minute": 0},
         says="rate_limit_per_minute"),
    Case("rate limit 60001", "POST", "/v1/endpoints", 422,
         body={"url": "https://x.test/", "rate_limit_per_minute": 60001}, says="60000"),
    Case("rate limit 0 on patch", "PATCH", "/v1/endpoints/{eid}", 422, body={"rate_limit_per_minute": 0}),
    Case("missing url", "POST", "/v1/endpoints", 422, body={"description": "x"}, says="url"),
    Case("body is not an object", "POST", "/v1/endpoints", 422, body=["https://x.test/"]),
    Case("unknown endpoint id", "POST", "/v1/messages", 422,
         body={"event_type": "a", "payload": 1, "endpoint_ids": [MISSING_ENDPOINT]}, says=MISSING_ENDPOINT),
    Case("unknown field", "POST", "/v1/messages", 422, body={"event_type": "a", "payload": 1, "priority": 9},
         says="priority"),
    Case("unknown field on endpoint", "PATCH", "/v1/endpoints/{eid}", 422, body={"urls": ["x"]}, says="urls"),
    Case("deep nesting", "POST", "/v1/messages", 422, body={"event_type": "a", "payload": nested(64)},
         says="64"),
    Case("very deep nesting", "POST", "/v1/messages", 422,
         raw=json.dumps({"event_type": "a", "payload": "*"}).replace('"*"', "[" * 900 + "]" * 900).encode(),
         headers=JSON),
    Case("extremely deep nesting", "POST", "/v1/messages", 422,
         raw=b'{"event_type": "a", "payload": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", headers=JSON),
    Case("deep nesting on endpoints", "POST", "/v1/endpoints", 422,
         body={"url": "https://x.test/", "headers": nested(70)}),
    Case("header injection", "POST", "/v1/endpoints", 422,
         body={"url": "https://x.test/", "headers": {"X-Tenant": "a\r\nX-Injected: 1"}}, says="headers"),
    Case("header injection on patch", "PATCH", "/v1/endpoints/{eid}", 422,
         body={"headers": {"X-Tenant": "a\nSet-Cookie: x=1"}}, says="headers"),
    Case("reserved header", "POST", "/v1/endpoints", 422,
         body={"url": "https://x.test/", "headers": {"webhook-signature": "v1,forged"}}, says="headers"),
    Case("credentials in url", "POST", "/v1/endpoints", 422, body={"url": "https://user:pw@x.test/"}, says="url"),
    Case("odd scheme", "POST", "/v1/endpoints", 422, body={"url": "gopher://x.test/"}, says="url"),
    Case("javascript scheme", "POST", "/v1/endpoints", 422, body={"url": "javascript:alert(1)"}, says="url"),
    Case("missing payload", "POST", "/v1/messages", 422, body={"event_type": "a"}, says="payload"),
    Case("bad event type", "POST", "/v1/messages", 422, body={"event_type": "a b", "payload": 1},
         says="event_type"),
    Case("empty endpoint_ids", "POST", "/v1/messages", 422, body={"event_type": "a", "payload": 1,
                                                                 "endpoint_ids": []}),
    Case("overflowing number", "POST", "/v1/messages", 422, raw=b'{"event_type": "a", "payload": 1e400}',
         headers=JSON, says="finite"),
    Case("lone surrogate", "POST", "/v1/messages", 422, raw=b'{"event_type": "a", "payload": "\\ud800"}',
         headers=JSON, says="surrogate"),
    Case("bad idempotency key", "POST", "/v1/messages", 422, body={"event_type": "a", "payload": 1},
         headers={"Idempotency-Key": "has space"}, says="Idempotency-Key"),
    Case("empty batch", "POST", "/v1/messages/batch", 422, body={"messages": []}, says="messages"),
    Case("batch too long", "POST", "/v1/messages/batch", 422,
         body={"messages": [{"event_type": "a", "payload": 1}] * (MAX_BATCH + 1)}, says=str(MAX_BATCH)),
    Case("bad batch item", "POST", "/v1/messages/batch", 422,
         body={"messages": [{"event_type": "a", "payload": 1}, {"event_type": "", "payload": 1}]},
         says="messages[1].event_type"),
    Case("limit 0", "GET", "/v1/endpoints?limit=0", 422, says="limit"),
    Case("limit not a number", "GET", "/v1/endpoints?limit=ten", 422, says="limit"),
    Case("bad cursor", "GET", "/v1/endpoints?cursor=%%%", 422, says="cursor"),
    Case("unknown query parameter", "GET", "/v1/endpoints?limt=5", 422, says="limt"),
    Case("query parameter on ingest", "POST", "/v1/messages?async=1", 422, body={"event_type": "a", "payload": 1},
         says="async"),
    Case("api key without scopes", "POST", "/v1/api-keys", 422, body={"name": "x", "scopes": []}, says="scopes"),
    Case("api key with unknown scope", "POST", "/v1/api-keys", 422, body={"name": "x", "scopes": ["root"]}),
    Case("api key name too long", "POST", "/v1/api-keys", 422, body={"name": "x" * 101, "scopes": ["read"]}),
    Case("unknown field on rotate", "POST", "/v1/endpoints/{eid}/secret/rotate", 422, body={"secrets": []}),
]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_refusal_is_a_problem_and_changes_nothing(case: Case, world: World) -> None:
    headers = dict(case.headers)
    if case.auth in ("read", "send"):
        headers.update(bearer(world.keys[case.auth]))
    elif case.auth == "admin":
        headers.update(ADMIN)
    elif case.auth is not None:
        headers.update(bearer(case.auth))
    content = case.raw if case.raw is not None else (json.dumps(case.body).encode() if case.body is not None else None)
    if case.raw is None and case.body is not None:
        headers.setdefault("Content-Type", "application/json")
    before = await snapshot(world.store)
    response = await world.client.request(case.method, case.path.format(eid=world.endpoint_id),
                                          content=content, headers=headers)
    problem = assert_problem(response, case.status)
    assert case.says in problem["detail"]
    after = await snapshot(world.store)
    # A wrong key is counted against the client address (service/guessing.py), and nothing else changes.
    counted = after.pop(keys.auth_failures("127.0.0.1"), None)
    assert after == before
    assert (counted is not None) == (case.status == 401 and case.auth is not None), counted
    if case.status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if case.status == 405:
        assert response.headers["allow"]


async def test_405_lists_every_method_of_the_path(world: World) -> None:
    response = await world.client.put(f"/v1/endpoints/{world.endpoint_id}", headers=ADMIN)
    assert_problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PATCH", "DELETE"}


async def test_body_over_the_limit_without_content_length_is_413(world: World) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"event_type": "a", "payload": "'
        for _ in range(MAX_PAYLOAD // 1000 + 1):
            yield b"x" * 1000
        yield b'"}'

    before = await snapshot(world.store)
    response = await world.client.post("/v1/messages", content=chunks(), headers={**ADMIN, **JSON})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    assert await snapshot(world.store) == before


async def test_unreachable_redis_is_503_with_retry_after(store: Store, settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # redis-py raises inside the store's door (its pool cannot connect); the door translates.
        async def unreachable(*args: object, **kwargs: object) -> None:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

        app.state.context.store.redis.connection_pool.get_connection = unreachable
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hookpump.test") as client:
            response = await client.post("/v1/messages", json={"event_type": "a", "payload": 1}, headers=ADMIN)
    problem = assert_problem(response, 503)
    assert "Retry" in problem["detail"]
    assert response.headers["retry-after"].isdigit()


async def test_unexpected_error_is_a_500_problem_without_traceback(store: Store, settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals")

        app.state.context.store.messages.ingest = broken
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hookpump.test") as client:
            response = await client.post("/v1/messages", json={"event_type": "a", "payload": 1}, headers=ADMIN)
    assert_problem(response, 500)
    assert "secret internals" not in response.text and "Traceback" not in response.text
