"""Endpoint header values that carry credentials are write-only: once set, no read route of the API
(every GET in openapi.yaml), no console page, no CLI output, no log line and no Redis or history
record shows them; an update that sends the redaction marker back keeps them."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
import yaml
from click.testing import CliRunner

from core import keys
from core.credentials import REDACTED
from core.settings import Settings
from core.store import Store
from hookpump.commands import root
from tests.api import ADMIN, ADMIN_KEY, CONTRACT, api_client, assert_matches_contract, assert_problem, serving
from tests.console import sign_in
from tests.history_db import caught_up
from tests.pumping import delivery as delivery_now
from tests.pumping import running_worker, wait_until
from tests.receiver import Receiver

# One value per way a header becomes write-only: a credential name, a name with a credential fragment,
# and a name the owner marked secret.
PLANTED = {"Authorization": "Bearer planted-credential-1", "X-Signing-Token": "planted-credential-2",
           "X-Tenant-Pin": "planted-credential-3"}  # fmt: skip
MARKED = ["x-tenant-pin"]
PLAIN = ("X-Tenant", "acme")
SECRET_VALUE = re.compile(r"planted-credential-\d")


def leaks(text: str) -> list[str]:
    return SECRET_VALUE.findall(text)


def get_paths(ids: dict[str, str]) -> list[str]:
    """Every GET path of the contract with its {id} filled in by the resource it names."""
    document = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    paths = []
    for path, operations in document["paths"].items():
        if "get" not in operations:
            continue
        if "{id}" in path:
            resource = next(prefix for prefix in ids if path.startswith(prefix))  # a new kind of id: add it
            path = path.replace("{id}", ids[resource])
        paths.append(path)
    return paths


async def all_redis_text(redis_url: str, skip: str) -> str:
    """Every value of every Redis key but `skip` (the endpoint's own record, which must hold the values),
    as bytes read as text (some values are binary)."""
    raw = redis.asyncio.from_url(redis_url)  # no decoding: not every value is UTF-8
    parts: list[str] = []
    try:
        for key in sorted(await raw.keys("*")):
            kind = (await raw.type(key)).decode()
            if key.decode() == skip:
                continue
            reads = {"string": raw.get, "hash": raw.hgetall, "set": raw.smembers, "stream": raw.xrange,
                     "list": lambda k: raw.lrange(k, 0, -1), "zset": lambda k: raw.zrange(k, 0, -1)}  # fmt: skip
            parts.append(repr(await reads[kind](key)).encode().decode("unicode_escape", "replace"))
    finally:
        await raw.aclose()
    return "\n".join(parts)


@pytest.mark.slow
async def test_credential_header_values_never_leave_after_creation(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = await Receiver().start()
    try:
        async with api_client(settings) as client:
            created = await client.post("/v1/endpoints", headers=ADMIN, json={
                "url": receiver.url(), "headers": {**PLANTED, PLAIN[0]: PLAIN[1]}, "secret_headers": MARKED,
            })  # fmt: skip
            assert created.status_code == 201, created.text
            endpoint = created.json()
            eid = endpoint["id"]
            sent = await client.post("/v1/messages", headers=ADMIN, json={"event_type": "order.paid", "payload": {}})
            assert sent.status_code == 202, sent.text
            did, mid = sent.json()["deliveries"][0]["id"], sent.json()["id"]
            async with running_worker(settings):
                await receiver.wait_for(1, timeout=15)
                await wait_until(lambda: _succeeded(store, settings, did), what="the delivery succeeded")
            await caught_up(store, settings)
            bulk = await client.post("/v1/deliveries/retry", headers=ADMIN,
                                     json={"endpoint_id": eid, "status": ["succeeded"]})
            assert bulk.status_code == 202, bulk.text

            # The receiver got every value; the creating answer already shows none.
            for name, value in [*PLANTED.items(), PLAIN]:
                assert receiver.received[0].headers[name] == value
            assert endpoint["headers"] == {**dict.fromkeys(PLANTED, REDACTED), PLAIN[0]: PLAIN[1]}
            assert endpoint["secret_headers"] == MARKED

            ids = {"/v1/endpoints/": eid, "/v1/deliveries/retry/": bulk.json()["id"], "/v1/deliveries/": did,
                   "/v1/messages/": mid}  # fmt: skip
            pages: dict[str, str] = {}
            for path in get_paths(ids):
                answer = await client.get(path, headers=ADMIN)
                assert answer.status_code == 200, (path, answer.text)
                pages[path] = answer.text
            attempts = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()["attempts"]
            assert attempts[0]["request"]["headers"][PLAIN[0]] == PLAIN[1]  # a plain value is still shown
            assert {attempts[0]["request"]["headers"][name] for name in PLANTED} == {REDACTED}

            await sign_in(client, ADMIN_KEY)
            console = [f"/ui{route.path}" for route in _console_routes(client)]
            ui_ids = {"/ui/endpoints/": eid, "/ui/deliveries/": did, "/ui/bulk/": bulk.json()["id"]}
            for path in console:
                if "{id}" in path:
                    path = path.replace("{id}", next(v for k, v in ui_ids.items() if path.startswith(k)))
                answer = await client.get(path, params={"endpoint_id": eid} if path.endswith("/retry") else None)
                assert answer.status_code == 200, (path, answer.text[:300])
                pages[path] = answer.text
            assert f"/ui/endpoints/{eid}" in pages and f"/ui/deliveries/{did}" in pages

        with serving(settings) as url:
            runner = CliRunner()
            env = {"HOOKPUMP_URL": url, "HOOKPUMP_KEY": ADMIN_KEY}
            for args in (["endpoints", "update", eid, "--secret-header", "X-Tenant-Pin", "--secret-header", "X-Extra"],
                         ["endpoints", "show", eid], ["endpoints", "show", eid, "--json"],
                         ["endpoints", "list", "--json"], ["deliveries", "show", did],
                         ["deliveries", "show", did, "--json"]):  # fmt: skip
                result = runner.invoke(root, args, env=env)
                assert result.exit_code == 0, (args, result.output)
                pages[" ".join(args)] = result.output
            assert (await store.endpoints.get(eid)).secret_headers == ("x-extra", "x-tenant-pin")
            assert PLAIN[1] in pages[f"endpoints show {eid}"] and "Authorization" in pages[f"endpoints show {eid}"]
    finally:
        await receiver.stop()

    assert {where: leaks(text) for where, text in pages.items() if leaks(text)} == {}
    assert leaks(caplog.text) == []
    assert leaks(await all_redis_text(settings.redis_url or "", skip=keys.endpoint(eid))) == []
    assert leaks(history_file_text(settings)) == []


def history_file_text(settings: Settings) -> str:
    """The SQLite history file's bytes as text: a value written into any row shows up here."""
    assert settings.database_url is not None and settings.database_url.startswith("sqlite:///")
    return Path(settings.database_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")


def _console_routes(client: httpx.AsyncClient) -> list[Any]:
    """The console's GET pages, from its router (a new page is walked without editing this test)."""
    app = client._transport.app  # type: ignore[attr-defined]
    console = next(route for route in app.routes if getattr(route, "path", "") == "/ui" and hasattr(route, "routes"))
    return [route for route in console.routes
            if "GET" in (getattr(route, "methods", None) or ()) and route.path not in ("/login",)]  # fmt: skip


async def _succeeded(store: Store, settings: Settings, did: str) -> bool:
    return (await delivery_now(store, settings, did)).status == "succeeded"


async def test_an_update_that_sends_the_marker_back_keeps_the_credential(settings: Settings, store: Store) -> None:
    async with api_client(settings) as client:
        endpoint = (await client.post("/v1/endpoints", headers=ADMIN, json={
            "url": "https://receiver.test/hook", "headers": {**PLANTED, PLAIN[0]: PLAIN[1]}, "secret_headers": MARKED,
        })).json()  # fmt: skip
        eid = endpoint["id"]
        # GET, modify, write back: the markers keep the stored values.
        read = (await client.get(f"/v1/endpoints/{eid}", headers=ADMIN)).json()
        changed = {**read["headers"], PLAIN[0]: "umbrella"}
        answer = await client.patch(f"/v1/endpoints/{eid}", headers=ADMIN,
                                    json={"headers": changed, "secret_headers": read["secret_headers"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["headers"] == {**dict.fromkeys(PLANTED, REDACTED), PLAIN[0]: "umbrella"}
        stored = await store.endpoints.get(eid)
        assert stored.headers == {**PLANTED, PLAIN[0]: "umbrella"}

        # A new value replaces the stored one; a name sent in another case still finds its value.
        answer = await client.patch(f"/v1/endpoints/{eid}", headers=ADMIN, json={"headers": {
            "authorization": "Bearer rotated", "X-Signing-Token": REDACTED, "X-Tenant-Pin": REDACTED}})
        assert answer.status_code == 200, answer.text
        assert (await store.endpoints.get(eid)).headers == {
            "authorization": "Bearer rotated", "X-Signing-Token": PLANTED["X-Signing-Token"],
            "X-Tenant-Pin": PLANTED["X-Tenant-Pin"]}  # fmt: skip

        # The marker with no stored value behind it, and unmarking a kept value, are refused and change nothing.
        before = await store.endpoints.get(eid)
        for body, field in (
            ({"headers": {"X-Api-Key": REDACTED}}, "headers"),
            ({"headers": {"X-Other": REDACTED}, "secret_headers": ["x-other"]}, "headers"),
            ({"secret_headers": []}, "secret_headers"),
            ({"headers": {"X-Tenant-Pin": REDACTED}, "secret_headers": []}, "secret_headers"),
        ):
            problem = assert_problem(await client.patch(f"/v1/endpoints/{eid}", headers=ADMIN, json=body), 422)
            assert problem["errors"][0]["field"] == field, problem
        assert await store.endpoints.get(eid) == before
        # Unmarking with a new value is fine: the caller knows the value it sends.
        answer = await client.patch(f"/v1/endpoints/{eid}", headers=ADMIN,
                                    json={"headers": {"X-Tenant-Pin": "public-now"}, "secret_headers": []})
        assert answer.status_code == 200 and answer.json()["headers"] == {"X-Tenant-Pin": "public-now"}
        assert_matches_contract(answer.json(), "Endpoint")

        refused = await client.post("/v1/endpoints", headers=ADMIN,
                                    json={"url": "https://receiver.test/hook", "headers": {"Authorization": REDACTED}})
        assert assert_problem(refused, 422)["errors"][0]["field"] == "headers"
