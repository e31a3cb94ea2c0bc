"""Helpers for API tests: the app inside its lifespan behind an httpx client, auth headers, a
snapshot of every Redis key to prove that a refused request changed nothing, and a check of an
answer against its openapi.yaml schema."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import yaml

from core.settings import Settings
from core.store import Store
from core.telemetry import Telemetry
from service.app import create_app

ADMIN_KEY = "test-admin-key-0123456789abcdefghijkl"  # tests/conftest.py settings.api_key (32+ characters)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROBLEM = "application/problem+json"
CONTRACT = Path(__file__).resolve().parent.parent / "openapi.yaml"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The API as `hookpump serve` runs it (hookpump.cli.api_server), over real HTTP on a free loopback
    port in a thread of its own; its base URL. For the command line and for what uvicorn itself decides
    (proxy headers, header limits)."""
    from hookpump.cli import api_server
    from tests.conftest import free_port

    server = api_server(settings.replace(host="127.0.0.1", port=free_port()), Telemetry.disabled())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.asynccontextmanager
async def api_client(settings: Settings, telemetry: Telemetry | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a fresh app, with the app's lifespan (its store) running."""
    app = create_app(settings, telemetry)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hookpump.test") as client:
            yield client


async def snapshot(store: Store) -> dict[str, tuple[str, Any]]:
    """Every key with its type and its DUMP (the serialized value), for before/after comparisons."""
    result: dict[str, tuple[str, Any]] = {}
    for key in sorted(await store.redis.keys("*")):
        result[key] = (await store.redis.type(key), await store.redis.dump(key))
    return result


async def create_endpoint(client: httpx.AsyncClient, url: str = "https://receiver.test/hook",
                          **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/endpoints", json={"url": url, **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem+json document of `status` with an actionable detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://hookpump.dev/problems/")
    assert body["title"]
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    if status == 422:
        assert body["errors"] and all(e["field"] and e["message"] for e in body["errors"])
    return body


def assert_matches_contract(value: Any, schema_name: str) -> None:
    """`value` is what openapi.yaml's `components/schemas/<schema_name>` describes. The contract test
    cannot reach states that need a pump run (a delivery with attempts, a paused endpoint's stats)."""
    document = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(value)]
    assert not errors, errors
