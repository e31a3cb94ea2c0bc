"""The pump's own clock: runs a pump window whenever arq has not started one in time (arq's Redis
unreachable, arq's worker restarting), so delivery never waits on arq.

arq's cron starts a window every pump interval. A window drains until its end plus a grace
(`handover_grace`), and the next run takes it over then; so if no window has begun within an
interval plus that grace of the last one, no run is coming from arq, and the clock runs one itself.
Should arq's tick arrive meanwhile, the two runs meet on the run lease and hand over as two ticks do.
"""

from __future__ import annotations

import asyncio
import logging
import time

from scheduler.pump import Pump, handover_grace

log = logging.getLogger(__name__)


class PumpClock:
    def __init__(self, pump: Pump, interval: float) -> None:
        self._pump = pump
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.windows_run = 0  # windows this clock started because arq had not

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_time(), name="hookpump-pump-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _keep_time(self) -> None:
        patience = self._interval + handover_grace(self._interval)
        # At start, wait only the grace: arq runs a window at once when it can (run_at_startup).
        begun = time.monotonic() - self._interval
        while True:
            last = self._pump.last_window_started
            since = max(begun, last) if last is not None else begun
            wait = since + patience - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.windows_run == 0 or self.windows_run % 60 == 0:
                log.warning("no pump window started by arq for %.1f s (is arq's Redis reachable?); "
                            "running the pump on the worker's own clock", time.monotonic() - since)
            self.windows_run += 1
            try:
                await self._pump.run_window(int(time.time() * 1000))
            except asyncio.CancelledError:
                raise
            except Exception:  # the one broad catch of the clock: log, and try again next interval
                log.warning("a pump window run by the pump clock failed", exc_info=True)
                await asyncio.sleep(min(1.0, self._interval))
