"""Send permits for fast endpoints, asked for in batches.

An endpoint paced faster than 100 requests/s takes a permit from Redis for each send (see
core/store/lua/permit.lua): that keeps the 1-s bound on recorded send times across every worker.
Each endpoint asks for a run of its waiting sends at once (scheduler/sender.py), and the asks of
every endpoint waiting in the same millisecond share one script call.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from core.store import PermitAsk, PermitGrant, Store

# How long a batch waits for more asks to join it, and its largest size (one script call each).
GATHER_SECONDS = 0.001
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Permits:
    grant: PermitGrant
    redis_ahead_ms: float  # Redis's clock minus this process's, as seen when the answer came back

    def local_seconds(self, moment_ms: int) -> float:
        """A permit's moment on this process's clock (unix seconds), to sleep until."""
        return (moment_ms - self.redis_ahead_ms) / 1000


class PermitBatcher:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[tuple[PermitAsk, asyncio.Future[Permits]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def take(self, ask: PermitAsk) -> Permits:
        """Permits for the ask's sends (see PumpStore.send_permits). Raises what the Redis call raised."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._ask_forever(), name="hookpump-permits")
        future: asyncio.Future[Permits] = asyncio.get_running_loop().create_future()
        self._waiting.append((ask, future))
        self._ready.set()
        return await future

    async def _ask_forever(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(GATHER_SECONDS)  # let the asks of this moment join the batch
            self._ready.clear()
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            if self._waiting:
                self._ready.set()
            batch = [entry for entry in batch if not entry[1].done()]  # a cancelled send asks for nothing
            if not batch:
                continue
            try:
                redis_now_ms, grants = await self._store.pump.send_permits([ask for ask, _ in batch])
                redis_ahead_ms = redis_now_ms - time.time() * 1000
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # each send handles it as its own failure (see Sender._deliver)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), grant in zip(batch, grants, strict=True):
                if not future.done():
                    future.set_result(Permits(grant, redis_ahead_ms))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, future in self._waiting:
            future.cancel()
        self._waiting = []
