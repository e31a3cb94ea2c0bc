"""Adaptive pacing: does each receiver get its events as fast as it can take them, no faster?

Receivers of limited capacity behind endpoints configured 4x and 10x above it:
  - a strict limiter (nginx's limit_req arithmetic with no burst, scripted; 503 when refused),
  - a token bucket holding half a second of capacity (429 without Retry-After when empty),
  - Debian's nginx with `limit_req` (5 r/s, burst 0 and `burst=2 nodelay`) in front of a receiver, when
    nginx is installed (its own config in a temp folder, on loopback; its access log is the count),
  - a bucket whose capacity drops to a third for 60 s and recovers,
  - a receiver that refuses a third of its requests whatever the rate (503 without Retry-After), alone
    and behind a strict 5/s limit,
  - one that answers 503 to everything for 30 s and then takes whatever it is sent.
Every scenario runs at once, each on its own endpoint with a backlog that lasts the whole run, against a
real `hookpump worker` and, in the same run, against a reference: the `hookpump worker` of another
checkout (`--reference DIR`, e.g. `git worktree add /tmp/ref 39a7a92` for the loop before this one), or
without one the strategy before any loop (halve the rate and pause on every 429/503,
bench/halve_and_pause.lua). Each strategy has its own Redis.

    python -m bench.adaptive [--seconds 150] [--reference DIR]

Per scenario: goodput (2xx answers) as a share of what the receiver could take (for the flaky one: of
what it takes at the configured rate), after the first 30 s; the share of 429/503 answers (after 30 s,
and over the whole run); seconds until the 5-s goodput first reaches 0.95 of capacity (after each change
of capacity); the busiest 1-s window of sends against the bound ceil(rate/60) + 1; the spread of the
gaps between the sends hookpump recorded while it paced under the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import math
import random
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

from bench.processes import (
    PYTHON,
    Result,
    Row,
    free_port,
    hookpump_env,
    machine_facts,
    start_redis,
    stop,
)
from core.history import create_history_store
from core.history.writer import HistoryWriter
from core.settings import Settings
from core.store import NewMessage, create_store
from delivery.signing import generate_secret
from service.app import create_app
from tests.limiters import NGINX, Bucket, Limit, Nginx, Strict

PAYLOAD = json.dumps({"type": "order.paid", "id": "ord_0123456789", "amount": 4200})
WARM_UP = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    configured_per_s: float
    capacity: Callable[[float], float]  # requests/s the receiver takes, `t` s into the run (inf: all)
    changes: tuple[float, ...] = ()  # when the capacity changes (convergence is timed from each)
    outage: tuple[float, float] | None = None  # 503 to everything in [start, end)
    limiter: str = "bucket"  # bucket (half a second of burst), strict (no burst), nginx (limit_req)
    nginx_burst: int = 0
    flaky: float = 0.0  # share of requests refused (503) whatever the rate, after the limiter


def _steady(capacity: float) -> Callable[[float], float]:
    return lambda _t: capacity


def _drop(capacity: float, start: float, end: float) -> Callable[[float], float]:
    return lambda t: capacity / 3 if start <= t < end else capacity


def scenarios(seconds: float, nginx: bool) -> list[Scenario]:
    out = [
        Scenario(f"strict limit {c:g}/s, configured {k:g}x ({c * k:g}/s)", c * k, _steady(c), limiter="strict")
        for c in (2.0, 5.0, 20.0)
        for k in (4.0, 10.0)
    ]
    out += [
        Scenario(f"bucket {c:g}/s with 0.5 s of burst, configured {k:g}x ({c * k:g}/s)", c * k, _steady(c))
        for c in (4.0, 50.0)
        for k in (4.0, 10.0)
    ]
    if nginx:
        out += [
            Scenario(f"nginx limit_req 5r/s burst={b}{' nodelay' if b else ''}, configured {k:g}x ({5 * k:g}/s)",
                     5.0 * k, _steady(5.0), limiter="nginx", nginx_burst=b)
            for b in (0, 2)
            for k in (4.0, 10.0)
        ]
    out.append(
        Scenario("bucket 4/s dropping to 1.33/s for 60 s, configured 10/s", 10.0, _drop(4.0, 45.0, 105.0),
                 changes=(45.0, 105.0))
    )
    out.append(Scenario("a third refused whatever the rate, configured 10/s", 10.0, _steady(math.inf), flaky=1 / 3))
    out.append(Scenario("a third refused, behind a strict 5/s limit, configured 20/s", 20.0, _steady(5.0),
                        limiter="strict", flaky=1 / 3))
    outage = (WARM_UP, WARM_UP + 30.0)
    out.append(Scenario("503 to everything for 30 s, configured 10/s", 10.0, _steady(math.inf), outage=outage))
    return out


@dataclass
class Path_:
    scenario: Scenario
    limiter: Bucket | Strict
    answers: list[tuple[float, int]] = field(default_factory=list)  # (arrival, status)
    random: random.Random = field(default_factory=lambda: random.Random(7))


class Receivers:
    """One aiohttp server; a path per (strategy, scenario). nginx scenarios reach it through nginx, which
    answers their refusals itself (its access log counts them)."""

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
        elif s.limiter == "nginx" or path.limiter.take(now, s.capacity(t)):
            status = 503 if s.flaky and path.random.random() < s.flaky else 200
        else:
            status = 503 if s.limiter == "strict" else 429
        path.answers.append((now, status))
        return web.Response(status=status, text="ok" if status == 200 else "slow down")


async def load(redis_url: str, urls: dict[str, str], strategy: str, plan: list[Scenario], seconds: float) -> list[str]:
    """Create each scenario's endpoint (at its base URL by limiter) with its backlog; their ids, in plan order."""
    store = await create_store(Settings(redis_url=redis_url))
    eids: list[str] = []
    try:
        for i, s in enumerate(plan):
            peak = s.configured_per_s if any(math.isinf(s.capacity(t)) for t in (0, seconds)) else s.capacity(0)
            fields = {
                "url": f"{urls[s.limiter]}/{strategy}-{i}", "rate_limit_per_minute": round(s.configured_per_s * 60),
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
    settings = Settings(redis_url=redis_url, api_key="bench-admin-key-0123456789abcdef", database_url=database_url)
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
    converge: list[float | None]  # seconds from the start (and from each change) to 0.95 of capacity
    busiest: int  # most sends in any 1-s window, by the send moments hookpump recorded
    busiest_arrivals: int  # the same by the receiver's clock
    bound: int
    gaps: tuple[float, float, float] | None  # recorded send gaps after the warm-up: p1, p50, p99 (ms)
    drained: float | None = None  # outage: requests/s in the 30 s after it, as a share of configured


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    busiest, low = 0, 0
    for high, t in enumerate(times):
        while times[low] <= t - 1.0:
            low += 1
        busiest = max(busiest, high - low + 1)
    return busiest


def _gap_spread(sends: list[float], started: float, seconds: float) -> tuple[float, float, float] | None:
    times = sorted(t for t in sends if WARM_UP <= t - started < seconds)
    gaps = sorted((b - a) * 1000 for a, b in itertools.pairwise(times))
    if len(gaps) < 20:
        return None
    def pick(q: float) -> float:
        return gaps[min(len(gaps) - 1, int(q * len(gaps)))]

    return pick(0.01), pick(0.5), pick(0.99)


def figures(
    s: Scenario, answers: list[tuple[float, int]], sends: list[float], started: float, seconds: float
) -> Figures:
    rel = [(at - started, status) for at, status in answers]
    after = [(t, st) for t, st in rel if WARM_UP <= t < seconds]
    ok_after = sum(1 for _t, st in after if st == 200)
    step = 0.1
    # What the receiver takes: its capacity (at most the configured rate), less the share it refuses anyway.
    def takes(t: float) -> float:
        return min(s.capacity(t), s.configured_per_s) * (1 - s.flaky)

    possible = sum(takes(WARM_UP + i * step) * step for i in range(int((seconds - WARM_UP) / step)))
    if s.outage:
        possible -= s.configured_per_s * max(0.0, min(seconds, s.outage[1]) - max(WARM_UP, s.outage[0]))
    def over(rows: list[tuple[float, int]]) -> float:
        return sum(1 for _t, st in rows if st in (429, 503)) / max(1, len(rows))

    converge: list[float | None] = []
    for origin in (0.0, *s.changes, *((s.outage[1],) if s.outage else ())):
        found = None
        t = origin
        while t + 5 <= seconds:
            ok = sum(1 for x, st in rel if t <= x < t + 5 and st == 200)
            if ok >= 0.95 * takes(t + 2.5) * 5:
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
        gaps=_gap_spread(sends, started, seconds) if s.limiter in ("strict", "nginx") else None,
        drained=drained,
    )


def _worker(strategy: str, redis_url: str, database_url: str, reference: Path | None) -> subprocess.Popen[bytes]:
    env = hookpump_env(redis_url, allow_private_targets="true", worker_id=f"bench-{strategy}",
                       database_url=database_url)
    if strategy == "adaptive":
        return subprocess.Popen([PYTHON, "-m", "hookpump", "worker"], env=env)
    if reference is not None:  # the other checkout's worker, on its own code
        env["PYTHONPATH"] = str(reference)
        return subprocess.Popen([PYTHON, "-m", "hookpump", "worker"], env=env, cwd=reference)
    return subprocess.Popen([PYTHON, "-m", "bench.baseline_worker"], env=env)


async def measure(
    seconds: float, reference: Path | None, only: str = ""
) -> tuple[list[Scenario], dict[str, list[Figures]]]:
    have_nginx = NGINX is not None
    if not have_nginx:
        print("adaptive: nginx is not installed; its scenarios are left out (apt-get install nginx-light)",
              file=sys.stderr)
    plan = [s for s in scenarios(seconds, have_nginx) if only in s.name]
    receivers = Receivers()
    await receivers.start()
    results: dict[str, list[Figures]] = {}
    eids: dict[str, list[str]] = {}
    sends: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hookpump-adaptive-") as tmp:
        nginx = Nginx(Path(tmp)) if have_nginx else None
        direct = f"http://127.0.0.1:{receivers.port}"
        urls = {"bucket": direct, "strict": direct, "nginx": f"http://127.0.0.1:{nginx.port if nginx else 0}"}
        if nginx is not None:
            nginx.start(receivers.port, {f"{strategy}-{i}": Limit(s.capacity(0), s.nginx_burst)
                                         for strategy in STRATEGIES for i, s in enumerate(plan)
                                         if s.limiter == "nginx"})
        servers, workers = [], []
        try:
            for strategy in STRATEGIES:
                port = free_port()
                directory = Path(tmp) / strategy
                directory.mkdir()
                servers.append(start_redis(directory, port, appendonly=False))
                redis_url = f"redis://127.0.0.1:{port}/0"
                database_url = f"sqlite:///{directory}/history.db"  # each strategy its own history
                eids[strategy] = await load(redis_url, urls, strategy, plan, seconds)
                for i, s in enumerate(plan):
                    receivers.paths[f"{strategy}-{i}"] = Path_(s, Strict() if s.limiter == "strict" else Bucket(0.5))
                workers.append((strategy, redis_url, database_url))
            print(f"adaptive: both strategies, {len(plan)} scenarios each, {seconds:.0f} s ...", file=sys.stderr)
            receivers.started = time.time()
            processes = [_worker(*worker, reference) for worker in workers]
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
            if nginx is not None:
                nginx.stop()
            await receivers.stop()
        if nginx is not None:  # nginx's own log counts what it refused and what it passed on
            for name, answers in nginx.answers().items():
                receivers.paths[name].answers = answers
    for strategy in STRATEGIES:
        results[strategy] = [
            figures(s, receivers.paths[f"{strategy}-{i}"].answers, sends[strategy][i], receivers.started, seconds)
            for i, s in enumerate(plan)
        ]
    return plan, results


STRATEGIES = ("adaptive", "reference")


def _converge(values: list[float | None]) -> str:
    return " / ".join("never" if v is None else f"{v:.0f} s" for v in values)


def _cell(f: Figures) -> str:
    text = (f"goodput {f.goodput:.2f}, refused {f.overload_after:.1%} ({f.overload_all:.1%} overall), "
            f"converged {_converge(f.converge)}, busiest 1 s {f.busiest}/{f.bound} "
            f"({f.busiest_arrivals} at the receiver)")
    if f.gaps is not None:
        text += f", send gaps p1/p50/p99 {f.gaps[0]:.0f}/{f.gaps[1]:.0f}/{f.gaps[2]:.0f} ms"
    if f.drained is not None:
        text += f", from the first success after the outage {f.drained:.2f} of the configured rate for 20 s"
    return text


def run(seconds: float = 150.0, reference: Path | None = None, only: str = "") -> Result:
    started = time.monotonic()
    plan, results = asyncio.run(measure(seconds, reference, only))
    command = (f"python -m bench.adaptive --seconds {seconds:g}" + (f" --reference {reference}" if reference else "")
               + (f" --only '{only}'" if only else ""))
    result = Result("Adaptive pacing: goodput against receivers of limited capacity", command)
    label = f"reference ({reference}): " if reference else "halve and pause: "
    for i, s in enumerate(plan):
        new, old = results["adaptive"][i], results["reference"][i]
        result.rows.append(Row(s.name, _cell(new), label + _cell(old), _ratio(new.goodput, old.goodput)))
    result.notes += [
        "goodput: 2xx answers after the first 30 s / what the receiver could take in that time (its capacity, "
        "at most the configured rate, less the share it refuses whatever the rate; the outage's 30 s "
        "excluded); ratio column: goodput against the reference's",
        "converged: seconds from the start (and from each change of capacity, or the end of the outage) until "
        "5 s of goodput first reach 0.95 of what the receiver takes",
        "strict: nginx's limit_req arithmetic with no burst, scripted, 503 when refused; bucket: a token bucket "
        "of `capacity`/s holding half a second's worth, 429 when empty; nginx: Debian's nginx, counted from its "
        "access log; no Retry-After anywhere; every scenario on its own endpoint (max_in_flight 10), all at "
        "once, one worker per strategy",
        "busiest 1 s: the most sends in any 1-s window by the send moments hookpump recorded (attempt "
        "starts, read through GET /v1/endpoints/{id}/attempts) / ceil(rate/60) + 1 for the configured rate; "
        "in brackets the same by the receiver's clock; send gaps: between consecutive recorded sends after "
        "the first 30 s",
    ]
    result.seconds = time.monotonic() - started
    return result


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=150.0, help="length of the run (at least 140)")
    parser.add_argument("--reference", type=Path, help="a checkout whose worker runs beside this one's")
    parser.add_argument("--only", default="", help="run only the scenarios whose name contains this")
    args = parser.parse_args()
    result = run(args.seconds, args.reference.resolve() if args.reference else None, args.only)
    print(f"machine: {machine_facts()}\n")
    print(result.markdown())


if __name__ == "__main__":
    main()
