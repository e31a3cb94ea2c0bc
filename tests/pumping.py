"""Helpers for pump tests: run a real worker (arq + pump + sender) in this event loop, make endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from core.history import create_history_store
from core.history.log import DeliveryLog
from core.models import Delivery
from core.settings import Settings
from core.store import NewMessage, Store
from core.telemetry import Telemetry
from delivery.signing import generate_secret
from scheduler.worker import run_worker
from tests.api import ADMIN


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, telemetry: Telemetry | None = None) -> AsyncIterator[asyncio.Event]:
    """A real `hookpump worker` (arq worker, cron pump, sender) as a task of this loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, telemetry))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def wait_until(check: Callable[[], Awaitable[object]], timeout: float = 30.0, what: str = "") -> None:
    """Poll `check()` every 0.1 s until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not true within {timeout} s: {what or check}")


async def make_endpoint(store: Store, url: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "url": url, "rate_limit_per_minute": 6000, "max_in_flight": 50, "event_types": None, "headers": {},
        "description": "", "enabled": True, "trace_propagation": True,
    }
    values.update(fields)
    secret = fields.pop("secret", None) or generate_secret()
    values.pop("secret", None)
    endpoint = await store.endpoints.create(values, secret)
    return endpoint.id


async def send(store: Store, count: int, *, endpoint_ids: list[str] | None = None,
               event_type: str = "order.paid") -> list[str]:
    """Ingest `count` messages (in batches); returns the delivery ids in order."""
    dids: list[str] = []
    for start in range(0, count, 1000):
        batch = [NewMessage(event_type, json.dumps({"n": n}), endpoint_ids)
                 for n in range(start, min(count, start + 1000))]
        accepted = await store.messages.ingest(batch)
        dids += [d["id"] for m in accepted.messages for d in m["deliveries"]]
    return dids


async def statuses(store: Store, dids: list[str], settings: Settings | None = None) -> dict[str, int]:
    """How many of `dids` are in each status. Redis answers for the deliveries it still holds; a
    finished delivery it has forgotten (its final state is in the history store) is looked up in the
    history when `settings` are given, else counted under None."""
    pipe = store.redis.pipeline(transaction=False)
    for did in dids:
        pipe.hget(f"hp:dlv:{did}", "status")
    found = list(await pipe.execute())
    forgotten = [did for did, status in zip(dids, found, strict=True) if status is None]
    if forgotten and settings is not None:
        assert settings.database_url is not None
        history = create_history_store(settings)
        await history.open()
        try:
            for did in forgotten:
                stored = await history.get_delivery(did)
                if stored is not None:
                    found[dids.index(did)] = stored.delivery.status.value
        finally:
            await history.close()
    counts: dict[str, int] = {}
    for status in found:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def recorded_send_times(client: Any, eid: str, expected: int, timeout: float = 10.0) -> list[float]:
    """The send moments hookpump recorded for the endpoint's attempts (unix seconds), read through the
    API's attempt log (`client`: tests.api.api_client), once at least `expected` are there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        times: list[float] = []
        cursor: str | None = None
        while True:
            params = {"limit": 250, **({"cursor": cursor} if cursor else {})}
            response = await client.get(f"/v1/endpoints/{eid}/attempts", params=params,
                                        headers=ADMIN)
            assert response.status_code == 200, response.text
            body = response.json()
            times += [datetime.datetime.fromisoformat(a["started_at"]).timestamp() for a in body["data"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        if len(times) >= expected or asyncio.get_running_loop().time() > deadline:
            return sorted(times)
        await asyncio.sleep(0.1)


async def delivery(store: Store, settings: Settings, did: str) -> Delivery:
    """The delivery as the API shows it: from Redis while it holds it, else from the history."""
    history = create_history_store(settings)
    await history.open()
    try:
        return (await DeliveryLog(store, history).get_delivery(did)).delivery
    finally:
        await history.close()
