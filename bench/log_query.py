"""Delivery log query time against the size of the log: `GET /v1/deliveries?endpoint_id=..&status=failed
&limit=50`, and the page after it (by cursor), at 10,000 and at 1,000,000 stored deliveries, on a private
redis-server (no AOF: only reads are timed).

    python -m bench.log_query --sizes 10000,1000000 --queries 500

The log is built with `store.messages.ingest` (100 messages a call, each fanned out to 10 endpoints: 1000
deliveries a call); every 10th delivery of the queried endpoint is then failed through the Lua status
helpers the pump uses (`_lib.lua` finish()), so indexes and counters are what a pump run leaves. Requests go
through the real app in this process (httpx ASGI transport, auth included): the figure is the API's query
cost without the network. The claim under test: the time does not grow with the size of the log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from bench.processes import free_port, machine_facts, start_redis, stop
from core.models import DeliveryStatus
from core.settings import Settings
from core.store import DeliveryFilter, NewMessage, Store, create_store
from core.store.connection import hgetall
from service.app import create_app

API_KEY = "bench-key"
ENDPOINTS = 10
MESSAGES_PER_CALL = 100  # x ENDPOINTS deliveries per ingest call
FAILED_EVERY = 10  # every 10th delivery of the queried endpoint is failed
WARM_UP = 50
FIGURES = ("first", "next", "store")

# Moves pending deliveries to failed exactly as complete.lua does for a 4xx, with the shared helpers.
FAIL_LUA = """
local now = tonumber(ARGV[1])
for i = 2, #ARGV do
  local did = ARGV[i]
  local d = redis.call('HMGET', 'hp:dlv:' .. did, 'eid', 'status')
  if d[2] == 'pending' then
    redis.call('ZREM', 'hp:ep:' .. d[1] .. ':due', did)
    finish(did, d[1], 'pending', 'failed', now)
    redis.call('HSET', 'hp:dlv:' .. did, 'attempts', 1, 'last_code', 400, 'last_error', 'HTTP 400')
  end
end
flush()
return 1
"""


async def grow(store: Store, fail: Any, queried: str, endpoints: list[str], target: int, stored: int) -> int:
    """Ingest until `target` deliveries are stored; fail every FAILED_EVERY-th on `queried`."""
    while stored < target:
        count = max(1, min(MESSAGES_PER_CALL, (target - stored) // len(endpoints)))
        batch = [NewMessage("order.paid", json.dumps({"n": stored + i}), endpoints) for i in range(count)]
        accepted = await store.messages.ingest(batch)
        mine = [d["id"] for m in accepted.messages for d in m["deliveries"] if d["endpoint_id"] == queried]
        await fail(args=[int(time.time() * 1000), *mine[::FAILED_EVERY]])
        stored += count * len(endpoints)
    return stored


async def timed(client: httpx.AsyncClient, params: dict[str, str | int], count: int) -> list[float]:
    """Milliseconds per request, after a warm-up; each answer is checked to be a full page."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    samples: list[float] = []
    for n in range(WARM_UP + count):
        started = time.perf_counter()
        response = await client.get("/v1/deliveries", params=params, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and len(response.json()["data"]) == params["limit"], response.text
        if n >= WARM_UP:
            samples.append(elapsed)
    return samples


async def timed_store(store: Store, queried: str, cursor: str | None, count: int) -> list[float]:
    """The same query straight on the data layer (MonitoringStore.list_deliveries): Redis and decoding."""
    wanted = DeliveryFilter(endpoint_id=queried, statuses=frozenset({DeliveryStatus.FAILED}))
    samples: list[float] = []
    for n in range(WARM_UP + count):
        started = time.perf_counter()
        page, _ = await store.monitoring.list_deliveries(wanted, limit=50, cursor=cursor)
        elapsed = (time.perf_counter() - started) * 1000
        assert len(page) == 50
        if n >= WARM_UP:
            samples.append(elapsed)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def measure(redis_url: str, sizes: list[int], queries: int) -> list[dict[str, Any]]:
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
                for size in sizes:
                    began = time.monotonic()
                    stored = await grow(store, fail, queried, endpoints, size, stored)
                    build_seconds = time.monotonic() - began
                    first: dict[str, str | int] = {"endpoint_id": queried, "status": "failed", "limit": 50}
                    page = (await client.get("/v1/deliveries", params=first,
                                             headers={"Authorization": f"Bearer {API_KEY}"})).json()
                    deeper = {**first, "cursor": page["next_cursor"]}
                    counts = await hgetall(store.redis, f"hp:ep:{queried}:count")
                    rows.append({
                        "size": int(await store.redis.zcard("hp:idx:dlv")),
                        "failed": int(counts.get(DeliveryStatus.FAILED.value, 0)),
                        "build_seconds": build_seconds,
                        "first": await timed(client, first, queries),
                        "next": await timed(client, deeper, queries),
                        "store": await timed_store(store, queried, None, queries),
                    })
    finally:
        await store.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| stored deliveries | failed on the queried endpoint | first page p50 | first page p99 "
             "| next page (cursor) p50 | next page p99 | data layer alone p50 | data layer p99 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cells = " | ".join(f"{percentile(row[k], q):.2f} ms" for k in FIGURES for q in (0.5, 0.99))
        lines.append(f"| {row['size']:,} | {row['failed']:,} | {cells} |")
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        ratios = [percentile(large[k], q) / percentile(small[k], q) for k in FIGURES for q in (0.5, 0.99)]
        lines.append(f"| ratio {large['size']:,} / {small['size']:,} | | "
                     + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="stored deliveries, comma separated, ascending")
    parser.add_argument("--queries", type=int, default=500, help="timed requests per figure")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    command = f"python -m bench.log_query --sizes {','.join(map(str, sizes))} --queries {args.queries}"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookpump-bench-redis-") as directory:
        port = free_port()
        redis = start_redis(Path(directory), port, appendonly=False)
        try:
            rows = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", sizes, args.queries))
        finally:
            stop(redis)
    print(f"machine: {machine_facts()}\n")
    print("## Delivery log query time against log size\n")
    print(f"`{command}` ({time.monotonic() - began:.0f} s; building the log took "
          + ", ".join(f"{r['build_seconds']:.0f} s to {r['size']:,}" for r in rows) + ")\n")
    print(table(rows))
    print(f"\n- `GET /v1/deliveries?endpoint_id=<one of {ENDPOINTS}>&status=failed&limit=50`, through the app "
          "in-process (auth, validation, Redis, JSON); 'next page' adds the first page's cursor.")
    print("- 'data layer alone': the first page from `MonitoringStore.list_deliveries` without the app.")
    print(f"- {args.queries} timed requests per figure after {WARM_UP} warm-up ones, one at a time.")


if __name__ == "__main__":
    main()
