"""Requests/s and latency of the HTTP clients delivery could use, against a local uvicorn receiver.

    .venv/bin/python bench/client_bench.py --requests 5000 --concurrency 50

Starts a raw-ASGI receiver (uvloop + httptools) in a subprocess on a free loopback port, pinned to
the last CPU while this process takes the first (as in /work/shared/notes/performance.md), then
measures each client in turn on the same ~1 KB signed JSON payload and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import httpx

from delivery.attempt import attempt_delivery
from delivery.client import DeliveryClient
from delivery.request import build_headers
from delivery.signing import generate_secret

Send = Callable[[int], Awaitable[None]]


async def receiver(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Raw ASGI: read the whole body, answer 200 with a tiny JSON body."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def serve(port: int, cpu: int | None) -> None:
    import uvicorn

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    uvicorn.run(
        receiver,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"receiver did not start on port {port}")


PAYLOAD = json.dumps(
    {
        "type": "order.created",
        "data": {
            "id": "ord_123",
            "lines": [
                {
                    "sku": f"SKU-{i:04d}",
                    "qty": i,
                    "price": "19.99",
                    "title": "A reasonably long product title",
                }
                for i in range(12)
            ],
        },
    },
    separators=(",", ":"),
)
SECRET = generate_secret()


def signed_headers(n: int) -> tuple[bytes, dict[str, str]]:
    body = PAYLOAD.encode()
    return body, build_headers(
        msg_id=f"msg_{n}",
        timestamp=int(time.time()),
        body=body,
        secrets=[SECRET],
        extra_headers={},
        user_agent="bench",
        traceparent=None,
    )


async def measure(send: Send, requests: int, concurrency: int) -> dict[str, float]:
    for n in range(min(200, requests)):  # warm the pool and caches
        await send(n)
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        for n in counter:
            started = time.perf_counter()
            await send(n)
            latencies.append(time.perf_counter() - started)

    cpu_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "rps": requests / elapsed,
        "p50": quantiles[49] * 1000,
        "p99": quantiles[98] * 1000,
        "cpu": cpu / elapsed,
        # CPU per request is the steadier figure on a busy machine (others steal wall time, not CPU
        # time), and 1e6 / it is what one fully available core could do.
        "cpu_us": cpu / requests * 1e6,
    }


def make_clients(url: str, limit: int) -> list[tuple[str, Callable[[], Any], Callable[[Any], Send]]]:
    def httpx_default() -> httpx.AsyncClient:
        return httpx.AsyncClient()

    def httpx_send(client: httpx.AsyncClient) -> Send:
        async def send(n: int) -> None:
            body, headers = signed_headers(n)
            response = await client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)

        return send

    def delivery_client() -> DeliveryClient:
        return DeliveryClient(
            connect_timeout=5, request_timeout=15, allow_private_targets=True, response_body_limit=limit
        )

    def checked(result: Any) -> None:
        if result.status != 200:
            raise RuntimeError(f"{result.error_kind}: {result.error_message}")

    def direct(client: DeliveryClient) -> Send:
        async def send(n: int) -> None:
            body, headers = signed_headers(n)
            checked(await client.send(url, body, headers))

        return send

    def via_httpx(client: DeliveryClient) -> Send:
        async def send(n: int) -> None:
            body, headers = signed_headers(n)
            checked(await client.send_httpx(url, body, headers))

        return send

    def whole_attempt(client: DeliveryClient) -> Send:
        async def send(n: int) -> None:
            report = await attempt_delivery(
                client,
                url=url,
                msg_id=f"msg_{n}",
                event_type="order.created",
                payload_json=PAYLOAD,
                secrets=[SECRET],
                extra_headers={},
                traceparent=None,
                attempt_number=1,
                trigger="scheduled",
            )
            if report.status_code != 200:
                raise RuntimeError(report.error)

        return send

    def aiohttp_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

    def aiohttp_send(session: aiohttp.ClientSession) -> Send:
        async def send(n: int) -> None:
            body, headers = signed_headers(n)
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(response.status)

        return send

    return [
        ("(a) httpx.AsyncClient, default pool", httpx_default, httpx_send),
        ("(b) DeliveryClient.send (aiohttp direct)", delivery_client, direct),
        ("(b') DeliveryClient.send_httpx (httpx API over aiohttp)", delivery_client, via_httpx),
        ("(b'') attempt_delivery (sign + send + classify + record)", delivery_client, whole_attempt),
        ("(c) plain aiohttp.ClientSession", aiohttp_session, aiohttp_send),
    ]


async def run(url: str, args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    """Median over `rounds`; the clients take turns within each round, so that noise from other work
    on the machine falls on all of them alike."""
    clients = [c for c in make_clients(url, args.body_limit) if not args.only or any(k in c[0] for k in args.only)]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in clients}
    for _ in range(args.rounds):
        for name, create, sender in clients:
            client = create()
            try:
                runs[name].append(await measure(sender(client), args.requests, args.concurrency))
            finally:
                await client.aclose() if hasattr(client, "aclose") else await client.close()
    return [
        (name, {key: statistics.median(r[key] for r in results) for key in results[0]})
        for name, results in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per client (max 100000)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="report the median of this many rounds")
    parser.add_argument("--body-limit", type=int, default=4096)
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and receiver to CPUs")
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop")
    parser.add_argument("--only", action="append", help="run only clients whose label contains this")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cpu)
        return
    args.requests = max(1, min(args.requests, 100_000))
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port)] + (["--cpu", str(cpus[-1])] if pin else [])
    server = subprocess.Popen(command)
    try:
        wait_for_port(port)
        if pin:
            os.sched_setaffinity(0, {cpus[0]})
        if args.uvloop:
            import uvloop

            uvloop.install()
        rows = asyncio.run(run(f"http://127.0.0.1:{port}/hook", args))
    finally:
        server.terminate()
        server.wait(10)
    print(
        f"\n{args.requests} requests per client and round, median of {args.rounds} rounds, "
        f"concurrency {args.concurrency}, "
        f"{'client and receiver pinned to separate CPUs' if pin else 'unpinned'}, "
        f"{'uvloop' if args.uvloop else 'asyncio'} client loop, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, aiohttp {aiohttp.__version__}\n"
    )
    print("| client | req/s | p50 ms | p99 ms | client CPU | CPU µs/req | one-core ceiling req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows:
        print(
            f"| {name} | {row['rps']:,.0f} | {row['p50']:.1f} | {row['p99']:.1f} | {row['cpu']:.0%} "
            f"| {row['cpu_us']:.0f} | {1e6 / row['cpu_us']:,.0f} |"
        )


if __name__ == "__main__":
    main()
