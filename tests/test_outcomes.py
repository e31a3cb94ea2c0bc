"""What each answer does to a delivery: retries, failures, 410, transport errors, signatures, SSRF."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from core.history import create_history_store
from core.settings import Settings
from core.store import NewMessage, Store
from delivery.signing import generate_secret
from tests.api import ADMIN, api_client
from tests.history_db import caught_up
from tests.pumping import delivery, make_endpoint, running_worker, send, statuses
from tests.receiver import Receiver, Reply, always

pytestmark = pytest.mark.slow


async def wait_status(
    store: Store, settings: Settings, did: str, wanted: set[str], timeout: float = 10
) -> dict[str, str]:
    """The delivery's fields (as strings, "" for none) once its status is one of `wanted`; read from
    Redis while it holds the delivery, else from the history store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await delivery(store, settings, did)
        if found.status in wanted:
            return {"status": found.status.value, "attempts": str(found.attempts),
                    "last_code": str(found.last_status_code or ""), "last_error": found.last_error or ""}
        if loop.time() > deadline:
            raise AssertionError(f"delivery {did} is {found.status}, expected {wanted}")
        await asyncio.sleep(0.05)


async def attempts(store: Store, settings: Settings, did: str) -> list[dict[str, object]]:
    """The delivery's attempt records, from the history store once the outbox has drained."""
    await caught_up(store, settings)
    history = create_history_store(settings)
    await history.open()
    try:
        found = await history.get_delivery(did)
        assert found is not None
        return found.attempts
    finally:
        await history.close()


async def test_500_then_success_retries_with_the_same_webhook_id(store: Store, settings: Settings) -> None:
    receiver = await Receiver(lambda n, _r: Reply(500) if n < 2 else Reply()).start()
    try:
        eid = await make_endpoint(store, receiver.url())
        [did] = await send(store, 1, endpoint_ids=[eid])
        async with running_worker(settings):
            record = await wait_status(store, settings, did, {"succeeded"})
        assert record["attempts"] == "3"
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(ids) == 1 and len(receiver.received) == 3
        log = await attempts(store, settings, did)
        assert [a["response"]["status"] for a in log] == [500, 500, 200]  # type: ignore[index]
        # The retries waited: at least retry_base/2 (equal jitter) between attempts.
        gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
        assert min(gaps) >= settings.retry_base / 2
    finally:
        await receiver.stop()


@pytest.mark.parametrize("status", [400, 401, 404, 422, 301])
async def test_other_4xx_and_redirects_fail_without_retry(store: Store, settings: Settings, status: int) -> None:
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 301 else {}
    receiver = await Receiver(always(Reply(status, headers))).start()
    try:
        eid = await make_endpoint(store, receiver.url())
        [did] = await send(store, 1, endpoint_ids=[eid])
        async with running_worker(settings):
            record = await wait_status(store, settings, did, {"failed"})
            await asyncio.sleep(0.5)
        assert record["last_code"] == str(status)
        assert len(receiver.received) == 1  # no retry, and the redirect was not followed
    finally:
        await receiver.stop()


async def test_410_disables_the_endpoint_and_keeps_its_deliveries(store: Store, settings: Settings) -> None:
    receiver = await Receiver(always(Reply(410))).start()
    try:
        eid = await make_endpoint(store, receiver.url(), max_in_flight=1, rate_limit_per_minute=60)
        dids = await send(store, 5, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(1, timeout=5)
            await asyncio.sleep(1.5)
            endpoint = await store.endpoints.get(eid)
            assert not endpoint.enabled and endpoint.disabled_reason == "gone"
            assert len(receiver.received) == 1
            counts = await statuses(store, dids)
            assert counts == {"retrying": 1, "pending": 4}  # kept, none dropped or failed
            assert await store.redis.zcard(f"hp:ep:{eid}:due") == 5
            # New messages without explicit targets no longer fan out to it.
            accepted = await store.messages.ingest([NewMessage("order.paid", "{}", None)])
            assert accepted.messages[0]["deliveries"] == []
            # Re-enabling releases the held deliveries.
            receiver.script = always(Reply())
            await store.endpoints.update(eid, {"enabled": True})
            await receiver.wait_for(6, timeout=10)
    finally:
        await receiver.stop()


async def test_transport_failures_retry_and_record_the_error(store: Store, settings: Settings) -> None:
    def script(n: int, _request: web.Request) -> Reply:
        if n == 0:
            return Reply(reset=True)
        if n == 1:
            return Reply(delay=settings.request_timeout + 0.5)  # past the total timeout
        return Reply()

    receiver = await Receiver(script).start()
    try:
        eid = await make_endpoint(store, receiver.url())
        [did] = await send(store, 1, endpoint_ids=[eid])
        async with running_worker(settings):
            await wait_status(store, settings, did, {"succeeded"}, timeout=15)
        log = await attempts(store, settings, did)
        kinds = [a["error"]["kind"] if a["error"] else None for a in log]  # type: ignore[index]
        assert kinds[0] in ("reset", "protocol")
        assert kinds[1] == "timeout"
        assert kinds[2] is None
    finally:
        await receiver.stop()


async def test_an_unresolvable_name_is_retried_with_a_dns_error(store: Store, settings: Settings) -> None:
    eid = await make_endpoint(store, "http://hookpump-test.invalid/hook")
    [did] = await send(store, 1, endpoint_ids=[eid])
    async with running_worker(settings):
        record = await wait_status(store, settings, did, {"retrying"})
    assert record["last_error"].startswith("dns")


async def test_signatures_verify_with_the_standardwebhooks_package(store: Store, settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        secret = generate_secret()
        eid = await make_endpoint(store, receiver.url(), secret=secret, headers={"X-Tenant": "acme"})
        await send(store, 3, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(3, timeout=5)
        for request in receiver.received:
            headers = {k.lower(): v for k, v in request.headers.items()}
            payload = Webhook(secret).verify(request.body, headers)
            assert "n" in payload
            assert headers["x-tenant"] == "acme"
            assert headers["user-agent"].startswith("hookpump/")
        # After a rotation both secrets sign, so a receiver holding either verifies.
        await store.endpoints.rotate_secret(eid, new_secret := generate_secret(), grace_seconds=60)
        await send(store, 1, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(4, timeout=5)
        last = receiver.received[-1]
        headers = {k.lower(): v for k, v in last.headers.items()}
        Webhook(secret).verify(last.body, headers)
        Webhook(new_secret).verify(last.body, headers)
    finally:
        await receiver.stop()


@pytest.mark.parametrize("host", ["localhost", "0x7f.1", "2130706433"])
async def test_a_target_refused_at_connect_time_fails_at_once_with_the_reason(
    store: Store, settings: Settings, host: str
) -> None:
    """The endpoint was accepted (its name resolved elsewhere then, or private targets were on); sending
    re-checks the address, and a refused one is final: no retry can change it. The numeric forms are
    read by the guard itself, not left to the resolver."""
    receiver = await Receiver().start()
    try:
        eid = await make_endpoint(store, receiver.url().replace("127.0.0.1", host))
        [did] = await send(store, 1, endpoint_ids=[eid])
        async with running_worker(settings.replace(allow_private_targets=False)):
            record = await wait_status(store, settings, did, {"retrying", "failed"})
        await caught_up(store, settings)
        async with api_client(settings) as client:
            detail = (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()
    finally:
        await receiver.stop()
    assert receiver.received == []
    assert record["status"] == "failed" and record["attempts"] == "1", record
    assert "forbidden_address" in record["last_error"] and "loopback" in record["last_error"]
    [attempt] = detail["attempts"]
    assert attempt["outcome"] == "failed"
    assert attempt["error"]["kind"] == "forbidden_address"
    assert "127.0.0.1 is a loopback address" in attempt["error"]["message"]
