"""arq behind its own door (scheduler/job_queue.py): the API enqueues through it without loading the
worker, arq's Redis is HOOKPUMP_ARQ_REDIS_URL, and delivery goes on while that Redis is unreachable."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import redis

from core.settings import Settings
from core.store import Store
from scheduler.job_queue import JOBS_QUEUE
from tests.api import ADMIN, api_client, assert_problem, create_endpoint
from tests.conftest import RedisServer, free_port
from tests.receiver import Receiver
from tests.workers import worker_process


def test_the_api_imports_the_job_queue_door_and_not_the_worker() -> None:
    check = ("import service.app, sys; "
             "loaded = [m for m in ('aiohttp', 'scheduler.worker', 'scheduler.sender') if m in sys.modules]; "
             "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


async def test_a_bulk_retry_is_enqueued_on_arq_s_own_redis(store: Store, settings: Settings, tmp_path: Path) -> None:
    arq_redis = RedisServer(tmp_path, appendonly=False)
    arq_redis.start()
    try:
        own = settings.replace(arq_redis_url=arq_redis.url)
        async with api_client(own) as client:
            eid = (await create_endpoint(client))["id"]
            started = await client.post("/v1/deliveries/retry", json={"endpoint_id": eid}, headers=ADMIN)
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
        arq_side = redis.Redis(port=arq_redis.port, decode_responses=True)
        try:
            assert arq_side.zrange(JOBS_QUEUE, 0, -1) == [f"bulk_retry:{job_id}"]
            assert arq_side.exists(f"arq:job:bulk_retry:{job_id}")
        finally:
            arq_side.close()
        # Nothing of arq's on the data store.
        assert await store.redis.exists(JOBS_QUEUE, f"arq:job:bulk_retry:{job_id}") == 0
    finally:
        arq_redis.stop()


async def test_with_arq_s_redis_unreachable_a_worker_still_delivers_and_readyz_says_degraded(
    store: Store, settings: Settings
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cut_off = settings.replace(arq_redis_url=dead)
    receiver = await Receiver().start()
    try:
        async with api_client(cut_off) as client:
            eid = (await create_endpoint(client, receiver.url()))["id"]
            async with worker_process(cut_off, "no-arq", arq_redis_url=dead):
                started = time.monotonic()
                sent = await client.post("/v1/messages", json={"event_type": "a", "payload": {"n": 1},
                                                               "endpoint_ids": [eid]}, headers=ADMIN)
                assert sent.status_code == 202, sent.text
                await receiver.wait_for(1, timeout=30)
                delivered_after = time.monotonic() - started

                ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["job_queue"]["status"] == "degraded"
                assert "HOOKPUMP_ARQ_REDIS_URL" in ready.json()["job_queue"]["detail"]

                refused = await client.post("/v1/deliveries/retry", json={"endpoint_id": eid}, headers=ADMIN)
                assert_problem(refused, 503)
                assert refused.headers["retry-after"].isdigit()
        print(f"delivered {delivered_after:.2f} s after ingest with arq's Redis unreachable")
    finally:
        await receiver.stop()


async def test_readyz_says_the_job_queue_is_ok_when_it_answers(store: Store, settings: Settings) -> None:
    async with api_client(settings) as client:
        await store.pump.heartbeat("readyz-test", {"last_window_ms": 0, "lag_ms": 0, "interval_ms": 1000})
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["job_queue"] == {"status": "ok", "detail": None}
