"""Adaptive pacing: does each receiver get its events as fast as it can take them, no faster?

Receivers of limited capacity (a token bucket: `capacity` requests/s, bursts of half a second's worth,
429 without Retry-After above it) behind endpoints configured 2.5x and 10x above that capacity; one whose
capacity drops to a third for 60 s and recovers; one that answers 503 to everything for 30 s and then
takes whatever it is sent. Every scenario runs at once, each on its own endpoint with a backlog that
lasts the whole run, against a real `hookpump worker` and, in the same run, against the strategy
hookpump had before (halve the rate and pause the endpoint on every 429/503; bench/halve_and_pause.lua),
each with its own Redis.

    python -m bench.adaptive [--seconds 150]

Per scenario: goodput (2xx answers) as a share of what the receiver could take, after the first 30 s;
the share of 429/503 answers (after 30 s, and over the whole run); seconds until the 5-s goodput first
reaches 0.9 of capacity (after each change of capacity); the busiest 1-s window of arrivals against the
bound ceil(rate/60) + 1 (arrival times are the receiver's, so they carry this box's scheduling jitter).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiohttp import web

from bench.processes import PYTHON, Result, Row, free_port, hookpump_env, machine_facts, start_redis, stop
from core.history import create_history_store
from core.history.writer import HistoryWriter
from core.settings import Settings
from core.store import NewMessage, create_store
from delivery.signing import generate_secret
from service.app import create_app

PAYLOAD = json.dumps({"type": "order.paid", "id": "ord_0123456789", "amount": 4200})
WARM_UP = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    configured_per_s: float
    capacity: Callable[[float], float]  # requests/s the receiver takes, `t` s into the run (inf: all)
    changes: tuple[float, ...] = ()  # when the capacity changes (convergence is timed from each)
    outage: tuple[float, float] | None = None  # 503 to everything in [start, end)


def _steady(capacity: float) -> Callable[[float], float]:
    return lambda _t: capacity


def _drop(capacity: float, start: float, end: float) -> Callable[[float], float]:
    return lambda t: capacity / 3 if start <= t < end else capacity


def scenarios(seconds: float) -> list[Scenario]:
    out = [
        Scenario(f"capacity {c:g}/s, configured {k:g}x ({c * k:g}/s)", c * k, _steady(c))
        for c in (2.0, 4.0, 50.0)
        for k in (2.5, 10.0)
    ]
    out.append(
        Scenario("capacity 4/s dropping to 1.33/s for 60 s, configured 10/s", 10.0, _drop(4.0, 45.0, 105.0),
                 changes=(45.0, 105.0))
    )
    outage = (WARM_UP, WARM_UP + 30.0)
    out.append(Scenario("503 to everything for 30 s, configured 10/s", 10.0, _steady(math.inf), outage=outage))
    return out


@dataclass
class Bucket:
    """The receiver's rate limit: a token bucket holding half a second of capacity (at least one)."""

    tokens: float = 0.0
    at: float = 0.0

    def take(self, now: float, capacity: float) -> bool:
        if math.isinf(capacity):
            return True
        burst = max(1.0, capacity / 2)
        self.tokens = min(burst, self.tokens + (now - self.at) * capacity) if self.at else burst
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Path_:
    scenario: Scenario
    bucket: Bucket = field(default_factory=Bucket)
    answers: list[tuple[float, int]] = field(default_factory=list)  # (arrival, status)


class Receivers:
    """One aiohttp server; a path per (strategy, scenario)."""

    def __init__(self) -> None:
        self.paths: dict[str, Path_] = {}
        self.started = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        path = self.paths[request.match_info["name"]]
        t = now - self.started
        s = path.scenario
        if s.outage and s.outage[0] <= t < s.outage[1]:
            status = 503
        else:
            status = 200 if path.bucket.take(now, s.capacity(t)) else 429
        path.answers.append((now, status))
        return web.Response(status=status, text="ok" if status == 200 else "slow down")


async def load(redis_url: str, receiver: str, strategy: str, plan: list[Scenario], seconds: float) -> list[str]:
    """Create each scenario's endpoint with its backlog; their ids, in plan order."""
    store = await create_store(Settings(redis_url=redis_url))
    eids: list[str] = []
    try:
        for i, s in enumerate(plan):
            peak = s.configured_per_s if any(math.isinf(s.capacity(t)) for t in (0, seconds)) else s.capacity(0)
            fields = {
                "url": f"{receiver}/{strategy}-{i}", "rate_limit_per_minute": round(s.configured_per_s * 60),
                "max_in_flight": 10, "event_types": None, "headers": {}, "description": s.name,
                "enabled": True, "trace_propagation": True,
            }
            eid = (await store.endpoints.create(fields, generate_secret())).id
            eids.append(eid)
            backlog = int(peak * seconds * 1.2) + 50
            for start in range(0, backlog, 1000):
                await store.messages.ingest([NewMessage("order.paid", PAYLOAD, [eid])] * min(1000, backlog - start))
    finally:
        await store.close()
    return eids


async def write_history(redis_url: str, database_url: str) -> None:
    """Write what the stopped worker's outbox still holds into the history store, as its writer would."""
    settings = Settings(redis_url=redis_url, database_url=database_url)
    store, history = await create_store(settings), create_history_store(settings)
    await history.open()
    try:
        writer = HistoryWriter(store.outbox, history, consumer="bench-adaptive")
        await store.outbox.ensure_group()
        while (await store.outbox.backlog()).length:
            await writer.drain_once(block_ms=20)
    finally:
        await history.close()
        await store.close()


async def recorded_starts(redis_url: str, database_url: str, eid: str) -> list[float]:
    """The send moments hookpump recorded for the endpoint's attempts, through the monitoring API."""
    settings = Settings(redis_url=redis_url, api_key="bench-admin-key", database_url=database_url)
    app = create_app(settings)
    starts: list[float] = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hookpump.bench",
        headers={"Authorization": "Bearer bench-admin-key"},
    ) as client:
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 250, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(f"/v1/endpoints/{eid}/attempts", params=params)).json()
            starts += [datetime.datetime.fromisoformat(a["started_at"]).timestamp() for a in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                return starts


@dataclass(frozen=True)
class Figures:
    goodput: float  # share of capacity after the warm-up
    overload_after: float
    overload_all: float
    converge: list[float | None]  # seconds from the start (and from each change) to 0.9 of capacity
    busiest: int  # most sends in any 1-s window, by the send moments hookpump recorded
    busiest_arrivals: int  # the same by the receiver's clock
    bound: int
    drained: float | None = None  # outage: requests/s in the 30 s after it, as a share of configured


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    busiest, low = 0, 0
    for high, t in enumerate(times):
        while times[low] <= t - 1.0:
            low += 1
        busiest = max(busiest, high - low + 1)
    return busiest


def figures(
    s: Scenario, answers: list[tuple[float, int]], sends: list[float], started: float, seconds: float
) -> Figures:
    rel = [(at - started, status) for at, status in answers]
    after = [(t, st) for t, st in rel if WARM_UP <= t < seconds]
    ok_after = sum(1 for _t, st in after if st == 200)
    step = 0.1
    possible = sum(min(s.capacity(WARM_UP + i * step), s.configured_per_s) * step
                   for i in range(int((seconds - WARM_UP) / step)))
    if s.outage:
        possible -= s.configured_per_s * max(0.0, min(seconds, s.outage[1]) - max(WARM_UP, s.outage[0]))
    over = lambda rows: sum(1 for _t, st in rows if st in (429, 503)) / max(1, len(rows))  # noqa: E731
    converge: list[float | None] = []
    for origin in (0.0, *s.changes, *((s.outage[1],) if s.outage else ())):
        found = None
        t = origin
        while t + 5 <= seconds:
            ok = sum(1 for x, st in rel if t <= x < t + 5 and st == 200)
            cap = min(s.capacity(t + 2.5), s.configured_per_s)
            if ok >= 0.9 * cap * 5:
                found = t + 5 - origin
                break
            t += 0.5
        converge.append(found)
    drained = None
    if s.outage:  # the rate in the 20 s from the first success after it
        first = min((t for t, st in rel if t >= s.outage[1] and st == 200), default=None)
        if first is not None:
            ok = sum(1 for t, st in rel if first <= t < first + 20 and st == 200)
            drained = ok / 20 / s.configured_per_s
    return Figures(
        goodput=ok_after / possible if possible else math.nan,
        overload_after=over(after),
        overload_all=over(rel),
        converge=converge,
        busiest=busiest_second(sends),
        busiest_arrivals=busiest_second([t for t, _st in rel]),
        bound=math.ceil(s.configured_per_s) + 1,
        drained=drained,
    )


def _worker(strategy: str, redis_url: str, database_url: str) -> subprocess.Popen[bytes]:
    env = hookpump_env(redis_url, allow_private_targets="true", worker_id=f"bench-{strategy}",
                       database_url=database_url)
    module = "bench.baseline_worker" if strategy == "baseline" else "hookpump"
    args = [PYTHON, "-m", module] + ([] if strategy == "baseline" else ["worker"])
    return subprocess.Popen(args, env=env)


async def measure(seconds: float) -> tuple[list[Scenario], dict[str, list[Figures]]]:
    plan = scenarios(seconds)
    receivers = Receivers()
    await receivers.start()
    url = f"http://127.0.0.1:{receivers.port}"
    results: dict[str, list[Figures]] = {}
    eids: dict[str, list[str]] = {}
    sends: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hookpump-adaptive-") as tmp:
        servers, workers = [], []
        try:
            for strategy in ("adaptive", "baseline"):
                port = free_port()
                directory = Path(tmp) / strategy
                directory.mkdir()
                servers.append(start_redis(directory, port, appendonly=False))
                redis_url = f"redis://127.0.0.1:{port}/0"
                database_url = f"sqlite:///{directory}/history.db"  # each strategy its own history
                eids[strategy] = await load(redis_url, url, strategy, plan, seconds)
                for i, s in enumerate(plan):
                    receivers.paths[f"{strategy}-{i}"] = Path_(s)
                workers.append((strategy, redis_url, database_url))
            print(f"adaptive: both strategies, {len(plan)} scenarios each, {seconds:.0f} s ...", file=sys.stderr)
            receivers.started = time.time()
            processes = [_worker(*worker) for worker in workers]
            try:
                await asyncio.sleep(seconds)
            finally:
                for process in processes:
                    stop(process)
            for strategy, redis_url, database_url in workers:
                await write_history(redis_url, database_url)
                sends[strategy] = [await recorded_starts(redis_url, database_url, eid) for eid in eids[strategy]]
        finally:
            for server in servers:
                stop(server)
            await receivers.stop()
    for strategy in ("adaptive", "baseline"):
        results[strategy] = [
            figures(s, receivers.paths[f"{strategy}-{i}"].answers, sends[strategy][i], receivers.started, seconds)
            for i, s in enumerate(plan)
        ]
    return plan, results


def _converge(values: list[float | None]) -> str:
    return " / ".join("never" if v is None else f"{v:.0f} s" for v in values)


def _cell(f: Figures) -> str:
    text = (f"goodput {f.goodput:.2f}, overload {f.overload_after:.1%} ({f.overload_all:.1%} overall), "
            f"converged {_converge(f.converge)}, busiest 1 s {f.busiest}/{f.bound} "
            f"({f.busiest_arrivals} at the receiver)")
    if f.drained is not None:
        text += f", from the first success after the outage {f.drained:.2f} of the configured rate for 20 s"
    return text


def run(seconds: float = 150.0) -> Result:
    started = time.monotonic()
    plan, results = asyncio.run(measure(seconds))
    result = Result(
        "Adaptive pacing: goodput against receivers of limited capacity",
        f"python -m bench.adaptive --seconds {seconds:g}",
    )
    for i, s in enumerate(plan):
        new, old = results["adaptive"][i], results["baseline"][i]
        result.rows.append(Row(s.name, _cell(new), "halve and pause: " + _cell(old), _ratio(new.goodput, old.goodput)))
    result.notes += [
        "goodput: 2xx answers after the first 30 s / what the receiver could take in that time (its capacity, "
        "at most the configured rate; the outage's 30 s excluded); ratio column: goodput against the baseline's",
        "converged: seconds from the start (and from each change of capacity, or the end of the outage) until "
        "5 s of goodput first reach 0.9 of capacity",
        "receiver: a token bucket of `capacity`/s holding half a second's worth, 429 without Retry-After when "
        "empty; every scenario on its own endpoint (max_in_flight 10), all at once, one worker per strategy",
        "busiest 1 s: the most sends in any 1-s window by the send moments hookpump recorded (attempt "
        "starts, read through GET /v1/endpoints/{id}/attempts) / ceil(rate/60) + 1 for the configured rate; "
        "in brackets the same by the receiver's clock, which also carries the scheduling jitter of a receiver "
        "process answering every scenario at once",
    ]
    result.seconds = time.monotonic() - started
    return result


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=150.0, help="length of the run (at least 140)")
    args = parser.parse_args()
    result = run(args.seconds)
    print(f"machine: {machine_facts()}\n")
    print(result.markdown())


if __name__ == "__main__":
    main()
