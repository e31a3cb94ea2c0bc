"""The reference sender: plain aiohttp, no queue, N POSTs at a fixed concurrency; prints requests/s.

    python -m bench.reference_client PORT TOTAL CONCURRENCY PAYLOAD
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp


async def main(port: int, total: int, concurrency: int, payload: str) -> float:
    body = payload.encode()
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            for n in counter:
                async with session.post(f"http://127.0.0.1:{port}/e{n % 100}", data=body,
                                        headers={"content-type": "application/json"}) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


if __name__ == "__main__":
    import uvloop

    port, total, concurrency, payload = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print(uvloop.run(main(port, total, concurrency, payload)))
