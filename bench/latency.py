"""Latency from ingest to the receiver, for an endpoint with spare budget: one message at a time through
the real API (`hookpump serve` + `hookpump worker`, private redis-server with AOF everysec), timed from
just before the POST to its arrival at a recording receiver (bench/recorder.py). Beside it, in the same
run: the floor (the same POST sent straight to the receiver) and arq with one job per delivery
(`enqueue_job` to arrival; arq 0.28, `max_jobs=100`, `poll_delay=0.05`, httpx).

    python -m bench.latency --messages 200 --gap 0.02

The endpoint's rate is 6,000/min (one slot per 10 ms) and messages are `--gap` seconds apart plus the
request's own time, so pacing never holds one back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from arq.connections import RedisSettings, create_pool

from bench.processes import (
    PYTHON,
    Result,
    Row,
    free_port,
    hookpump_env,
    machine_facts,
    quantile,
    ratio,
    run_async,
    start_hookpump,
    start_redis,
    start_uvicorn,
    stop,
)
from delivery.signing import generate_secret

API_KEY = "bench-admin-key-0123456789abcdef"
PAYLOAD = {"type": "order.paid", "id": "ord_0123456789", "amount": 4200, "items": ["x" * 40] * 10}
WAIT = 30.0  # at most this long for the last arrivals


async def arrivals(session: aiohttp.ClientSession, recorder: str, count: int) -> dict[str, float]:
    """webhook-id -> arrival time, once `count` have arrived (or WAIT has passed)."""
    deadline = time.monotonic() + WAIT
    while True:
        async with session.get(f"{recorder}/arrivals") as response:
            rows = json.loads(await response.text())
        if len(rows) >= count or time.monotonic() > deadline:
            async with session.delete(f"{recorder}/arrivals"):
                pass
            return {webhook_id: arrived for arrived, _path, webhook_id in rows}
        await asyncio.sleep(0.1)


def latencies_ms(sent: dict[str, float], arrived: dict[str, float]) -> tuple[list[float], int]:
    """Send-to-arrival in ms for those that arrived, and how many did not."""
    found = [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]
    return found, len(sent) - len(found)


async def through_hookpump(
    api: str, recorder: str, messages: int, gap: float
) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """(sent, arrived, API answer times in ms)."""
    headers = {"authorization": f"Bearer {API_KEY}"}
    body = {"event_type": "order.paid", "payload": PAYLOAD}
    sent: dict[str, float] = {}
    answered: list[float] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api}/v1/endpoints",
            headers=headers,
            json={"url": f"{recorder}/latency", "rate_limit_per_minute": 6000, "max_in_flight": 10},
        ) as response:
            if response.status != 201:
                raise RuntimeError(f"creating the endpoint answered {response.status}: {await response.text()}")
        # Warm up: the first messages wait for the worker's first pump run and open connections.
        for _ in range(5):
            async with session.post(f"{api}/v1/messages", headers=headers, json=body) as response:
                await response.read()
        await arrivals(session, recorder, 5)
        for _ in range(messages):
            started = time.time()
            async with session.post(f"{api}/v1/messages", headers=headers, json=body) as response:
                answer = await response.json()
            answered.append((time.time() - started) * 1000)
            sent[answer["id"]] = started
            await asyncio.sleep(gap)
        arrived = await arrivals(session, recorder, messages)
    return sent, arrived, answered


async def direct(recorder: str, messages: int, gap: float) -> dict[str, float]:
    """The floor: the same body POSTed straight to the receiver from a warm connection."""
    body = json.dumps(PAYLOAD).encode()
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for n in range(-5, messages):
            key = f"direct-{n}"
            started = time.time()
            async with session.post(f"{recorder}/direct", data=body, headers={"webhook-id": key}) as response:
                await response.read()
            if n >= 0:
                sent[key] = started
            await asyncio.sleep(gap)
    return sent


async def through_arq(redis_url: str, recorder: str, messages: int, gap: float) -> dict[str, float]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    payload, secret = json.dumps(PAYLOAD), generate_secret()
    sent: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            # Warm up: wait until the worker has started and delivered a few, as for hookpump.
            for n in range(5):
                await pool.enqueue_job("deliver", f"{recorder}/arq", f"arq-warm-{n}", payload, secret)
            await arrivals(session, recorder, 5)
        for n in range(messages):
            key = f"arq-{n}"
            started = time.time()
            await pool.enqueue_job("deliver", f"{recorder}/arq", key, payload, secret)
            sent[key] = started
            await asyncio.sleep(gap)
    finally:
        await pool.aclose()
    return sent


async def collect(recorder: str, count: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        return await arrivals(session, recorder, count)


def describe(values: list[float]) -> str:
    return f"p50 {quantile(values, 0.5):.1f} ms, p99 {quantile(values, 0.99):.1f} ms"


def ratios(values: list[float], reference: list[float]) -> str:
    return " / ".join(ratio(quantile(values, q), quantile(reference, q)) for q in (0.5, 0.99))


def run(messages: int = 200, gap: float = 0.02) -> Result:
    started = time.monotonic()
    result = Result(
        "Latency, ingest to receiver, endpoint with spare budget",
        f"python -m bench.latency --messages {messages} --gap {gap:g}",
    )
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as tmp:
        redis_port, api_port, recorder_port = free_port(), free_port(), free_port()
        redis = start_redis(Path(tmp), redis_port, appendonly=True)
        recorder_process = start_uvicorn("bench.recorder:app", recorder_port)
        recorder = f"http://127.0.0.1:{recorder_port}"
        env = hookpump_env(
            f"redis://127.0.0.1:{redis_port}/0",
            api_key=API_KEY,
            port=str(api_port),
            allow_private_targets="true",
            worker_id="bench-latency",
        )
        api = start_hookpump("serve", env, port=api_port)
        worker = start_hookpump("worker", env)
        arq_worker: subprocess.Popen[bytes] | None = None
        try:
            print("latency: hookpump ...", file=sys.stderr)
            hp_sent, hp_arrived, answered = run_async(
                through_hookpump(f"http://127.0.0.1:{api_port}", recorder, messages, gap)
            )
            hp, hp_lost = latencies_ms(hp_sent, hp_arrived)
            stop(worker)
            stop(api)
            print("latency: direct and arq ...", file=sys.stderr)
            floor_sent = run_async(direct(recorder, messages, gap))
            floor, _ = latencies_ms(floor_sent, run_async(collect(recorder, messages + 5)))
            arq_url = f"redis://127.0.0.1:{redis_port}/1"
            arq_worker = subprocess.Popen([PYTHON, "-m", "bench.arq_app", arq_url])
            arq_sent = run_async(through_arq(arq_url, recorder, messages, gap))
            arq, arq_lost = latencies_ms(arq_sent, run_async(collect(recorder, messages)))
        finally:
            for process in (arq_worker, worker, api, recorder_process, redis):
                if process is not None and process.poll() is None:
                    stop(process)
    result.rows += [
        Row(
            "ingest to receiver, p50 / p99, vs the same POST sent straight to the receiver (floor)",
            describe(hp),
            describe(floor),
            ratios(hp, floor),
        ),
        Row(
            "ingest to receiver, p50 / p99, vs arq one job per delivery (enqueue_job to arrival)",
            describe(hp),
            describe(arq),
            ratios(hp, arq),
        ),
    ]
    result.notes += [
        f"{messages} messages each, one at a time, {gap * 1000:.0f} ms apart; the API answered 202 in "
        f"{describe(answered)}; hookpump max {max(hp, default=0):.1f} ms",
        f"not arrived within {WAIT:.0f} s: hookpump {hp_lost}, arq {arq_lost}",
        "the hookpump figure includes the API request (HTTP, auth, ingest.lua with AOF); the arq one only enqueue_job",
    ]
    result.seconds = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between messages")
    args = parser.parse_args()
    result = run(args.messages, args.gap)
    print(f"machine: {machine_facts()}\n")
    print(result.markdown())


if __name__ == "__main__":
    main()
