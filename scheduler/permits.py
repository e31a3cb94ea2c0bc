"""Send permits for fast endpoints, asked for in batches.

An endpoint paced faster than 100 requests/s takes a permit from Redis before each send (see
core/store/lua/permit.lua): that keeps the 1-s bound on recorded send times across every worker.
Asked one at a time, a permit is a Redis round trip per send, which cost about 15 % of a worker's
CPU in the throughput benchmark (its endpoints run at 1,000/s); here every send waiting for a permit
in the same few milliseconds shares one script call.
"""

from __future__ import annotations

import asyncio

from core.store import Store

# How long a batch waits for more sends to join it, and its largest size (one script call each).
GATHER_SECONDS = 0.001
MAX_BATCH = 1000


class PermitBatcher:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[tuple[str, str, int, asyncio.Future[tuple[bool, int]]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def take(self, endpoint_id: str, send_id: str, bound: int) -> tuple[bool, int]:
        """(granted, ms): see PumpStore.send_permits. Raises what the Redis call raised."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._ask_forever(), name="hookpump-permits")
        future: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((endpoint_id, send_id, bound, future))
        self._ready.set()
        return await future

    async def _ask_forever(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(GATHER_SECONDS)  # let the sends of this moment join the batch
            self._ready.clear()
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            if self._waiting:
                self._ready.set()
            batch = [entry for entry in batch if not entry[3].done()]  # a cancelled send asks for nothing
            if not batch:
                continue
            try:
                answers = await self._store.pump.send_permits([(eid, sid, bound) for eid, sid, bound, _ in batch])
            except asyncio.CancelledError:
                for *_, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # each send handles it as its own failure (see Sender._deliver)
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for *_, future in self._waiting:
            future.cancel()
        self._waiting = []
