"""Ingest: `POST /v1/messages` (one message per request, many concurrent clients) and
`POST /v1/messages/batch` (100 per request) against the real API (`python -m hookpump serve`, one uvicorn
process, uvloop + httptools, a private redis-server, one endpoint so each message fans out to one
delivery); beside each, in the same run, a hello-world Starlette route on the same server settings
receiving the same requests (`hello_app` below): the ceiling of the HTTP stack alone. Each
HOOKPUMP_DURABILITY of `--durability` gets its own Redis (fast: AOF everysec, strict: AOF always) and
API; the later ones stand beside the first, so the cost of strict is the ratio strict / fast.

    python -m bench.ingest --seconds 8 --concurrency 64 --batch-size 100 --batch-concurrency 8

The load comes from `wrk` (Debian package `wrk`) when it is installed: a C client leaves the 2 cores to
the servers. Otherwise (or with `--client aiohttp`) from aiohttp in this process. Each figure counts
the requests answered in a window of `--seconds` after a one-second warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.processes import (
    Result,
    Row,
    free_port,
    hookpump_env,
    machine_facts,
    ratio,
    start_hookpump,
    start_redis,
    start_uvicorn,
    stop,
)
from core.durability import Durability, parse_durability

API_KEY = "bench-admin-key-0123456789abcdef"
MESSAGE = {
    "event_type": "order.paid",
    "payload": {"type": "order.paid", "id": "ord_0123456789", "amount": 4200, "items": ["x" * 40] * 10},
}
MAX_REQUESTS = 500_000  # per measurement, whatever the duration
WARMUP = 1.0


async def hello(request: Request) -> Response:
    await request.body()
    return JSONResponse({"id": "msg_hello"}, status_code=202)


hello_app = Starlette(
    routes=[Route("/v1/messages", hello, methods=["POST"]), Route("/v1/messages/batch", hello, methods=["POST"])]
)


@dataclass(frozen=True, slots=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # answers other than 202, or failed requests
    accepted: int  # 202s in all, warm-up included


async def load(url: str, body: bytes, concurrency: int, seconds: float) -> Load:
    """`concurrency` clients POST `body` back to back for WARMUP + `seconds`; counts the measured window."""
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    latencies: list[float] = []
    errors = accepted = sent = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        begin = time.perf_counter()
        window_start, window_end = begin + WARMUP, begin + WARMUP + seconds

        async def lane() -> None:
            nonlocal errors, accepted, sent
            while sent < MAX_REQUESTS and time.perf_counter() < window_end:
                sent += 1
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 202
                except aiohttp.ClientError:
                    ok = False
                ended = time.perf_counter()
                errors += not ok
                accepted += ok
                if ok and window_start <= started and ended <= window_end:
                    latencies.append(ended - started)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    if not latencies:
        return Load(0.0, 0.0, 0.0, errors, accepted)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return Load(len(latencies) / seconds, cuts[49] * 1000, cuts[98] * 1000, errors, accepted)


def wrk_load(url: str, body: bytes, concurrency: int, seconds: float, tmp: Path) -> Load:
    """The same load from wrk (one thread, `concurrency` connections), after a one-second warm-up."""
    script = tmp / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = [==[{body.decode()}]==]\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
    )

    def wrk(duration: float) -> tuple[str, int, int]:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60,
        ).stdout
        total = int(_find(r"(\d+) requests in", out))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        return out, total, (int(bad.group(1)) if bad else 0) + socket_errors

    _, warm_total, warm_errors = wrk(WARMUP)
    out, total, errors = wrk(seconds)

    def latency_ms(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return Load(
        float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        latency_ms("50"),
        latency_ms("99"),
        warm_errors + errors,
        warm_total + total - warm_errors - errors,
    )


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{text}")
    return found.group(1)


async def create_endpoint(api: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api}/v1/endpoints",
            headers={"authorization": f"Bearer {API_KEY}"},
            json={"url": "http://127.0.0.1:9/hook", "rate_limit_per_minute": 60000},
        ) as response:
            if response.status != 201:
                raise RuntimeError(f"creating the endpoint answered {response.status}: {await response.text()}")
            return str((await response.json())["id"])


async def pending_deliveries(redis_url: str) -> int:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return int(await client.hget("hp:count", "pending") or 0)
    finally:
        await client.aclose()


def row(figure: str, hp: Load, ref: Load, per_request: int) -> Row:
    hp_rate, ref_rate = hp.requests_per_s * per_request, ref.requests_per_s * per_request
    return Row(
        figure,
        f"{hp_rate:,.0f} msg/s (p50 {hp.p50_ms:.1f} ms, p99 {hp.p99_ms:.1f} ms)",
        f"{ref_rate:,.0f} msg/s (p50 {ref.p50_ms:.1f} ms, p99 {ref.p99_ms:.1f} ms)",
        ratio(hp_rate, ref_rate),
    )


def measure(client: str, url: str, body: bytes, concurrency: int, seconds: float, tmp: Path) -> Load:
    if client == "wrk":
        return wrk_load(url, body, concurrency, seconds, tmp)
    return asyncio.run(load(url, body, concurrency, seconds))


def run(
    seconds: float = 8.0,
    concurrency: int = 64,
    batch_size: int = 100,
    batch_concurrency: int = 8,
    client: str = "auto",
    durabilities: tuple[Durability, ...] = (Durability.FAST, Durability.STRICT),
) -> Result:
    started = time.monotonic()
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "aiohttp"
    command = (
        f"python -m bench.ingest --seconds {seconds:g} --concurrency {concurrency} "
        f"--batch-size {batch_size} --batch-concurrency {batch_concurrency} --client {client} "
        f"--durability {','.join(durabilities)}"
    )
    result = Result("Ingest: POST /v1/messages and /v1/messages/batch", command)
    single = json.dumps(MESSAGE).encode()
    batch = json.dumps({"messages": [MESSAGE] * batch_size}).encode()
    figures = (  # name, path, body, concurrent clients, messages per request
        ("single", "/v1/messages", single, concurrency, 1),
        ("sequential", "/v1/messages", single, 1, 1),
        ("batch", "/v1/messages/batch", batch, batch_concurrency, batch_size),
    )
    loads: dict[str, Load] = {}
    stored: dict[Durability, int] = {}
    # Redis's files go to the temporary directory: on this machine an ext4 disk, so an fsync is real.
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-") as tmp:
        hello_port = free_port()
        reference = start_uvicorn("bench.ingest:hello_app", hello_port)
        try:
            for name, path, body, conc, _ in figures:
                print(f"ingest: reference {name} ...", file=sys.stderr)
                hello = f"http://127.0.0.1:{hello_port}{path}"
                loads[f"ref {name}"] = measure(client, hello, body, conc, seconds, Path(tmp))
        finally:
            stop(reference)
        for durability in durabilities:
            directory = Path(tmp) / durability
            directory.mkdir()
            redis_port, api_port = free_port(), free_port()
            redis = start_redis(directory, redis_port, durability=durability)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            env = hookpump_env(
                redis_url, api_key=API_KEY, port=str(api_port), allow_private_targets="true", durability=durability
            )
            api = start_hookpump("serve", env, port=api_port)
            try:
                hp_api = f"http://127.0.0.1:{api_port}"
                asyncio.run(create_endpoint(hp_api))
                for name, path, body, conc, _ in figures:
                    print(f"ingest: {durability} {name} ...", file=sys.stderr)
                    loads[f"{durability} {name}"] = measure(client, hp_api + path, body, conc, seconds, Path(tmp))
                stored[durability] = asyncio.run(pending_deliveries(redis_url))
            finally:
                stop(api)
                stop(redis)
    labels = {
        "single": f"`POST /v1/messages`, {concurrency} concurrent clients",
        "sequential": "`POST /v1/messages`, 1 client, one request after another",
        "batch": f"`POST /v1/messages/batch`, {batch_size} per request, {batch_concurrency} concurrent clients",
    }
    first = durabilities[0]
    for name, _, _, _, per_request in figures:
        result.rows.append(
            row(f"{labels[name]}, HOOKPUMP_DURABILITY={first}, vs hello-world Starlette route given the same body",
                loads[f"{first} {name}"], loads[f"ref {name}"], per_request)
        )  # fmt: skip
        for durability in durabilities[1:]:
            result.rows.append(
                row(f"{labels[name]}, HOOKPUMP_DURABILITY={durability} vs {first} (same run)",
                    loads[f"{durability} {name}"], loads[f"{first} {name}"], per_request)
            )  # fmt: skip
    for durability in durabilities:
        hp = {name: loads[f"{durability} {name}"] for name, *_ in figures}
        sent = hp["single"].accepted + hp["sequential"].accepted + hp["batch"].accepted * batch_size
        # A load generator stopped mid-request leaves up to `concurrency` requests that the API still accepts.
        unanswered = 3 * (concurrency + 1 + batch_concurrency * batch_size)
        consistent = sent <= stored[durability] <= sent + unanswered
        single_rate, batch_rate = hp["single"].requests_per_s, hp["batch"].requests_per_s * batch_size
        result.notes.append(
            f"{durability}: issue targets single >= 4,000 msg/s ({'met' if single_rate >= 4000 else 'NOT met'}), "
            f"batch >= 30,000 msg/s ({'met' if batch_rate >= 30000 else 'NOT met'}); {sent:,} messages answered "
            f"202, {stored[durability]:,} pending deliveries found in Redis afterwards "
            + ("(consistent)" if consistent else "(MISMATCH: a 202 without its delivery)")
        )
    errors = {name: lo.errors for name, lo in loads.items() if lo.errors}
    result.notes += [
        "fast: Redis appendfsync everysec; strict: appendfsync always (Redis fsyncs once per event-loop "
        "iteration for every client served in it, so concurrent requests share an fsync); Redis's files on "
        "the machine's disk (ext4), not tmpfs",
        f"non-202 answers or failed requests: {errors or 'none'}",
        f"load generator: {client}" + (" (one thread)" if client == "wrk" else " in the benchmark's process"),
        "payload ~500 B JSON; the hello-world route reads the body and answers a small JSON 202 without parsing it; "
        "API, reference server, Redis and the load generator share the 2 cores",
    ]
    result.seconds = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per figure")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-concurrency", type=int, default=8)
    parser.add_argument("--client", choices=["auto", "wrk", "aiohttp"], default="auto", help="auto: wrk if installed")
    parser.add_argument(
        "--durability", default="fast,strict", help="HOOKPUMP_DURABILITY values, comma-separated; the first is the base"
    )
    args = parser.parse_args()
    durabilities = tuple(parse_durability(value) for value in args.durability.split(","))
    result = run(args.seconds, args.concurrency, args.batch_size, args.batch_concurrency, args.client, durabilities)
    print(f"machine: {machine_facts()}\n")
    print(result.markdown())


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    main()
