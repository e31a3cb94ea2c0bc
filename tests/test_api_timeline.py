"""GET /v1/endpoints/{id}/timeline: requests sent per second (counted by complete.lua by each attempt's
start), dense over the window, with the limit line and the recorded pauses; and a real paced run
that never goes over the line."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from core.settings import Settings
from core.store import Completion, Store
from tests.api import ADMIN, api_client, assert_matches_contract, assert_problem, bearer
from tests.pumping import make_endpoint, running_worker, send
from tests.receiver import Receiver

NOWHERE = "http://127.0.0.1:9/never"


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def complete_attempts(store: Store, eid: str, started_ms: list[int]) -> None:
    """Claim and complete one delivery per start time, through the pump's own scripts."""
    await send(store, len(started_ms), endpoint_ids=[eid])
    claim = await store.pump.claim("w-test", horizon_ms=60_000, max_endpoints=10, max_deliveries=100)
    assert len(claim.deliveries) == len(started_ms)
    await store.pump.complete([
        Completion(d.id, d.attempt, "succeeded", status_code=200, record={"number": d.attempt, "outcome": "succeeded"},
                   started_ms=at)
        for d, at in zip(claim.deliveries, started_ms, strict=True)
    ])


async def test_the_timeline_counts_sends_by_the_second_they_started(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=6000)
    now_s = int(time.time())
    # Three in one second 10 s ago, one 3 s ago; one 20 min ago falls outside any window.
    await complete_attempts(store, eid, [(now_s - 10) * 1000 + 5, (now_s - 10) * 1000 + 500,
                                         (now_s - 10) * 1000 + 999, (now_s - 3) * 1000, (now_s - 1200) * 1000])
    response = await client.get(f"/v1/endpoints/{eid}/timeline?seconds=60", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert_matches_contract(body, "EndpointTimeline")
    points = body["points"]
    assert len(points) == 60 and body["seconds"] == 60
    seconds = [int(_seconds(p["at"])) for p in points]
    assert seconds == list(range(seconds[0], seconds[0] + 60))  # dense, oldest first
    assert now_s <= seconds[-1] <= now_s + 1
    by_second = {s: p["sent"] for s, p in zip(seconds, points, strict=True)}
    assert by_second[now_s - 10] == 3 and by_second[now_s - 3] == 1
    assert sum(by_second.values()) == 4
    assert body["limit_per_second"] == math.ceil(6000 / 60) + 1 == 101
    assert body["pauses"] == []
    default = (await client.get(f"/v1/endpoints/{eid}/timeline", headers=ADMIN)).json()
    assert default["seconds"] == 300 and len(default["points"]) == 300
    ttl = await store.redis.ttl(f"hp:ep:{eid}:sent:{(now_s - 10) // 60}")
    assert 900 < ttl <= 1200


async def test_the_timeline_shows_the_recorded_pauses_in_its_window(client: httpx.AsyncClient, store: Store) -> None:
    """The pump's overload control writes pause events to hp:ep:{eid}:pauses (newest first); the
    timeline returns those overlapping its window, oldest first, and skips malformed ones."""
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=90)
    now = int(time.time() * 1000)
    events = [  # oldest first here; LPUSH makes the list newest first
        {"start_ms": now - 3_600_000, "end_ms": now - 3_500_000, "reason": "backoff", "status_code": 503},
        {"start_ms": now - 50_000, "end_ms": now - 40_000, "reason": "retry_after", "status_code": 429},
        "not json",
        {"start_ms": now - 5_000, "end_ms": now + 20_000, "reason": "operator", "status_code": None},
    ]
    for event in events:
        await store.redis.lpush(f"hp:ep:{eid}:pauses", json.dumps(event) if isinstance(event, dict) else event)
    body = (await client.get(f"/v1/endpoints/{eid}/timeline?seconds=120", headers=ADMIN)).json()
    assert_matches_contract(body, "EndpointTimeline")
    assert [(p["reason"], p["status_code"]) for p in body["pauses"]] == [("retry_after", 429), ("operator", None)]
    assert abs(_seconds(body["pauses"][0]["start"]) * 1000 - (now - 50_000)) < 2
    assert body["limit_per_second"] == 3


async def test_timeline_refuses_bad_windows_and_unknown_endpoints(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE)
    for query in ("seconds=0", "seconds=901", "seconds=abc", "seconds=1.5", "window=60", "seconds=5&seconds=6"):
        assert_problem(await client.get(f"/v1/endpoints/{eid}/timeline?{query}", headers=ADMIN), 422)
    assert_problem(await client.get("/v1/endpoints/ep_00000000000000000000000000/timeline", headers=ADMIN), 404)
    reader = await client.post("/v1/api-keys", json={"name": "r", "scopes": ["read"]}, headers=ADMIN)
    sender = await client.post("/v1/api-keys", json={"name": "s", "scopes": ["send"]}, headers=ADMIN)
    assert (await client.get(f"/v1/endpoints/{eid}/timeline", headers=bearer(reader.json()["key"]))).status_code == 200
    assert_problem(await client.get(f"/v1/endpoints/{eid}/timeline", headers=bearer(sender.json()["key"])), 403)


@pytest.mark.slow
async def test_a_paced_run_never_goes_over_the_limit_line_and_matches_the_receiver(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    receiver = await Receiver().start()
    try:
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=300)  # 5/s: the line is at 6
        await send(store, 40, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(40, timeout=30)
            for _ in range(100):  # results are written back in batches
                body = (await client.get(f"/v1/endpoints/{eid}/timeline?seconds=120", headers=ADMIN)).json()
                if sum(p["sent"] for p in body["points"]) == 40:
                    break
                await asyncio.sleep(0.1)
    finally:
        await receiver.stop()
    sent = [p["sent"] for p in body["points"]]
    assert sum(sent) == 40
    assert max(sent) <= body["limit_per_second"] == 6
    assert sum(1 for n in sent if n > 0) >= 40 // 6  # spread over seconds, not one burst


def _seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
