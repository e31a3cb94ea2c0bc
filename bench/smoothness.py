"""Smoothness: a backlog of 10x an endpoint's per-minute rate, drained by a real `hookpump worker` to a
recording receiver (bench/recorder.py); the first `--observe` seconds of arrivals give the largest number
of requests in any 1-second window, divided by the bound `ceil(rate/60) + 1`, and the coefficient of
variation of the gaps between requests. Beside it, in the same run, the naive drain a team would
otherwise get: the same backlog as arq jobs, one per delivery (`max_jobs=100`, `poll_delay=0.05`).

    python -m bench.smoothness --rate 600 --observe 60

A backlog of 10x the rate takes 10 minutes to drain at that rate; only its first minute is observed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import arq_app
from bench.processes import (
    PYTHON,
    Result,
    Row,
    free_port,
    hookpump_env,
    machine_facts,
    ratio,
    run_async,
    start_hookpump,
    start_redis,
    start_uvicorn,
    stop,
)
from core.settings import Settings
from core.store import NewMessage, create_store
from delivery.signing import generate_secret

PAYLOAD = json.dumps({"type": "order.paid", "id": "ord_0123456789", "amount": 4200})


@dataclass(frozen=True, slots=True)
class Shape:
    requests: int  # arrivals in the observed window
    seconds: float  # first to last arrival in the window
    max_per_second: int  # most arrivals in any 1-second window
    gap_cv: float  # standard deviation / mean of the gaps between arrivals


def shape(times: list[float], observe: float) -> Shape:
    times = sorted(times)
    if not times:
        return Shape(0, 0.0, 0, math.nan)
    times = [t for t in times if t < times[0] + observe]
    most, low = 0, 0
    for high, t in enumerate(times):  # every window [t_low, t_low + 1 s) that starts at an arrival
        while times[low] <= t - 1.0:
            low += 1
        most = max(most, high - low + 1)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps) if len(gaps) > 1 and statistics.fmean(gaps) > 0 else math.nan
    return Shape(len(times), times[-1] - times[0], most, cv)


async def recorded(recorder: str, path: str) -> list[float]:
    async with aiohttp.ClientSession() as session, session.get(f"{recorder}/arrivals") as response:
        return [arrived for arrived, p, _ in json.loads(await response.text()) if p == path]


async def wait_for_arrivals(recorder: str, path: str, observe: float, count: int, limit: float) -> None:
    """Until `observe` seconds after the first arrival, or `count` arrivals, or `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        times = await recorded(recorder, path)
        if len(times) >= count or (times and time.time() > min(times) + observe):
            return
        await asyncio.sleep(0.5)


async def load_hookpump_backlog(redis_url: str, recorder: str, rate: int, backlog: int) -> None:
    store = await create_store(Settings(redis_url=redis_url))
    try:
        fields = {
            "url": f"{recorder}/hookpump",
            "rate_limit_per_minute": rate,
            "max_in_flight": 10,
            "event_types": None,
            "headers": {},
            "description": "smoothness",
            "enabled": True,
            "trace_propagation": True,
        }
        eid = (await store.endpoints.create(fields, generate_secret())).id
        for start in range(0, backlog, 1000):
            await store.messages.ingest([NewMessage("order.paid", PAYLOAD, [eid])] * min(1000, backlog - start))
    finally:
        await store.close()


def run(rate: int = 600, observe: float = 60.0) -> Result:
    started = time.monotonic()
    backlog = 10 * rate
    bound = math.ceil(rate / 60) + 1
    result = Result(
        f"Smoothness: backlog of 10x the rate ({backlog:,} at {rate}/min), first {observe:.0f} s",
        f"python -m bench.smoothness --rate {rate} --observe {observe:g}",
    )
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as tmp:
        redis_port, recorder_port = free_port(), free_port()
        redis = start_redis(Path(tmp), redis_port, appendonly=True)
        recorder_process = start_uvicorn("bench.recorder:app", recorder_port)
        recorder = f"http://127.0.0.1:{recorder_port}"
        hp_url, arq_url = f"redis://127.0.0.1:{redis_port}/0", f"redis://127.0.0.1:{redis_port}/1"
        arq_worker: subprocess.Popen[bytes] | None = None
        try:
            run_async(load_hookpump_backlog(hp_url, recorder, rate, backlog))
            print(f"smoothness: hookpump, observing {observe:.0f} s ...", file=sys.stderr)
            worker = start_hookpump(
                "worker", hookpump_env(hp_url, allow_private_targets="true", worker_id="bench-smooth")
            )
            try:
                run_async(wait_for_arrivals(recorder, "/hookpump", observe, backlog, observe + 30))
            finally:
                stop(worker)
            hp = shape(run_async(recorded(recorder, "/hookpump")), observe)
            print("smoothness: arq naive drain ...", file=sys.stderr)
            run_async(arq_app.enqueue(arq_url, [f"{recorder}/arq"], backlog, PAYLOAD, generate_secret()))
            arq_worker = subprocess.Popen([PYTHON, "-m", "bench.arq_app", arq_url])
            run_async(wait_for_arrivals(recorder, "/arq", observe, backlog, observe + 30))
            naive = shape(run_async(recorded(recorder, "/arq")), observe)
        finally:
            for process in (arq_worker, recorder_process, redis):
                if process is not None and process.poll() is None:
                    stop(process)
    result.rows += [
        Row(
            f"max requests in any 1-s window / bound ceil({rate}/60)+1 = {bound}",
            f"{hp.max_per_second} ({hp.max_per_second / bound:.2f} of the bound)",
            f"arq naive drain: {naive.max_per_second} ({naive.max_per_second / bound:.1f} of the bound)",
            ratio(hp.max_per_second, naive.max_per_second),
        ),
        Row(
            "coefficient of variation of the gaps between requests",
            f"{hp.gap_cv:.3f}",
            f"arq naive drain: {naive.gap_cv:.3f}",
            ratio(hp.gap_cv, naive.gap_cv),
        ),
    ]
    hp_rate = hp.requests / hp.seconds * 60 if hp.seconds else 0.0
    result.notes += [
        f"hookpump: {hp.requests} requests in the first {observe:.0f} s ({hp_rate:,.0f}/min against a configured "
        f"{rate}/min); the rest of the {backlog:,} backlog was left queued",
        f"arq: {naive.requests} requests arrived, the first to the last {naive.seconds:.1f} s apart "
        f"(whole backlog: {backlog:,})",
        "arrival times are taken at the receiver, so they include the network and scheduling jitter of this box",
    ]
    result.seconds = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=600, help="the endpoint's rate per minute")
    parser.add_argument("--observe", type=float, default=60.0, help="seconds of arrivals to look at")
    args = parser.parse_args()
    result = run(args.rate, args.observe)
    print(f"machine: {machine_facts()}\n")
    print(result.markdown())


if __name__ == "__main__":
    main()
