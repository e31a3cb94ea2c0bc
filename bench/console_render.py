"""Server-side render time of the console's deliveries page against the size of the log: `/ui/deliveries`
(newest 50, any status), `/ui/deliveries?endpoint_id=..&status=failed` (50 rows) and its next page by
cursor, at two log sizes, on a private redis-server (no AOF: only reads are timed).

    python -m bench.console_render --sizes 10000,1000000 --requests 300

The log is built exactly as bench/log_query.py builds it (ingest fanned out to 10 endpoints, every 10th
delivery of the queried endpoint failed with the pump's Lua helpers). Requests go through the real app in
this process (httpx ASGI transport) with a signed-in console session: session and key check, the same
read function as GET /v1/deliveries, Jinja2 rendering of the whole page. Time is measured around the whole
request, so it is the server's cost without the network.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from bench.log_query import ENDPOINTS, FAIL_LUA, grow, percentile
from bench.processes import free_port, machine_facts, start_redis, stop
from core.settings import Settings
from core.store import create_store
from service.app import create_app

API_KEY = "bench-admin-key-0123456789abcdef"
WARM_UP = 30
ROW = re.compile(r'data-testid="row"')
OLDER = re.compile(r'href="([^"]+)" data-testid="older"')
FIGURES = ("newest", "failed", "failed_next")


async def timed(client: httpx.AsyncClient, url: str, count: int) -> list[float]:
    samples: list[float] = []
    for n in range(WARM_UP + count):
        started = time.perf_counter()
        response = await client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and len(ROW.findall(response.text)) == 50, response.text[:300]
        if n >= WARM_UP:
            samples.append(elapsed)
    return samples


async def measure(redis_url: str, sizes: list[int], requests: int) -> list[dict[str, Any]]:
    settings = Settings(redis_url=redis_url, api_key=API_KEY, log_format="text")
    store = await create_store(settings)
    prelude = resources.files("core.store").joinpath("lua", "_lib.lua").read_text(encoding="utf-8")
    fail = store.redis.register_script(prelude + "\n" + FAIL_LUA)
    rows: list[dict[str, Any]] = []
    try:
        await store.flush_all_for_tests()
        fields = {"url": "http://127.0.0.1:9/never", "rate_limit_per_minute": 60, "max_in_flight": 10,
                  "event_types": None, "headers": {}, "description": "", "enabled": True, "trace_propagation": True}
        endpoints = [(await store.endpoints.create(fields, "whsec_" + "A" * 32)).id for _ in range(ENDPOINTS)]
        queried = endpoints[0]
        app = create_app(settings)
        stored = 0
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hookpump.bench") as client:
                signed_in = await client.post("/ui/login", data={"key": API_KEY},
                                              headers={"Origin": "http://hookpump.bench"})
                assert signed_in.status_code == 303
                for size in sizes:
                    began = time.monotonic()
                    stored = await grow(store, fail, queried, endpoints, size, stored)
                    build_seconds = time.monotonic() - began
                    failed = f"/ui/deliveries?endpoint_id={queried}&status=failed&limit=50"
                    first = (await client.get(failed)).text
                    older = OLDER.search(first)
                    assert older is not None
                    rows.append({
                        "size": int(await store.redis.zcard("hp:idx:dlv")),
                        "build_seconds": build_seconds,
                        "newest": await timed(client, "/ui/deliveries", requests),
                        "failed": await timed(client, failed, requests),
                        "failed_next": await timed(client, older.group(1).replace("&amp;", "&"), requests),
                    })
    finally:
        await store.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| stored deliveries | newest 50 p50 | newest 50 p99 | failed of one endpoint p50 | p99 "
             "| its next page (cursor) p50 | p99 |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cells = " | ".join(f"{percentile(row[k], q):.2f} ms" for k in FIGURES for q in (0.5, 0.99))
        lines.append(f"| {row['size']:,} | {cells} |")
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        ratios = [percentile(large[k], q) / percentile(small[k], q) for k in FIGURES for q in (0.5, 0.99)]
        cells = " | ".join(f"{r:.2f}x" for r in ratios)
        lines.append(f"| ratio {large['size']:,} / {small['size']:,} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="stored deliveries, comma separated, ascending")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per figure")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    command = f"python -m bench.console_render --sizes {','.join(map(str, sizes))} --requests {args.requests}"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-redis-") as directory:
        port = free_port()
        redis = start_redis(Path(directory), port, appendonly=False)
        try:
            rows = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", sizes, args.requests))
        finally:
            stop(redis)
    print(f"machine: {machine_facts()}\n")
    print("## Console deliveries page render time against log size\n")
    print(f"`{command}` ({time.monotonic() - began:.0f} s; building the log took "
          + ", ".join(f"{r['build_seconds']:.0f} s to {r['size']:,}" for r in rows) + ")\n")
    print(table(rows))
    print("\n- Whole requests through the app in-process with a console session: session and key check, the "
          "delivery log read (the same function as `GET /v1/deliveries`), the full HTML page rendered.")
    print(f"- {args.requests} timed requests per figure after {WARM_UP} warm-up ones, one at a time.")


if __name__ == "__main__":
    main()
