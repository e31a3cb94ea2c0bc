"""The pump: one run per arq cron tick and per worker, draining every due delivery at its endpoint's pace.

A run owns its window (tick .. tick + interval) through a Redis lease, so two runs of one worker
never overlap; the next tick's run asks for a handover and takes over within milliseconds, so there
is no gap. Work is never tied to a tick: whatever is due is claimed, after downtime too. Several
workers each run their own pump; the claim script shares work between them without double sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import backoff

from core.settings import Settings
from core.store import Store
from core.telemetry import Telemetry
from scheduler.instruments import WorkerTelemetry
from scheduler.sender import Sender

log = logging.getLogger(__name__)

# How far ahead a claim may book send slots. Small, so a pause learnt from a 429 can still stop
# slots that were booked but not yet sent; large enough that one claim feeds a fast endpoint.
HORIZON_MS = 200
MAX_ENDPOINTS_PER_CLAIM = 200
MAX_DELIVERIES_PER_CLAIM = 500
RUN_LEASE_MS = 3000
LEASE_REFRESH_S = 0.5
REAP_EVERY_S = 1.0
HEARTBEAT_EVERY_S = 1.0
IDLE_POLL_S = 0.5  # the longest an idle pump sleeps between looks, should a wake be missed


@dataclass
class WindowReport:
    """What one run did; logged at its end and exported to telemetry."""

    scheduled_ms: int
    started_ms: int = 0
    ended_ms: int = 0
    claims: int = 0
    claimed: int = 0
    endpoints_held_back: int = 0
    reaped: int = 0
    errors: int = 0
    outcome: str = "ran"
    notes: list[str] = field(default_factory=list)


class Pump:
    def __init__(
        self, store: Store, sender: Sender, settings: Settings, telemetry: WorkerTelemetry | None = None
    ) -> None:
        self._store = store
        self._sender = sender
        self._settings = settings
        self._telemetry = telemetry or WorkerTelemetry(Telemetry.disabled(settings))
        self._worker_id = settings.worker_id
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        # When a window last began (time.monotonic()), whoever started it: the pump clock reads it.
        self.last_window_started: float | None = None

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen_for_wake(), name="hookpump-wake")

    def stop(self) -> None:
        """Stop claiming; the current run returns at its next iteration."""
        self._stopping.set()
        self._wake.set()

    async def close(self) -> None:
        self.stop()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def _listen_for_wake(self) -> None:
        delays = backoff.expo(base=2, factor=0.1, max_value=5.0)
        next(delays)
        while not self._stopping.is_set():
            try:
                await self._store.listen_for_wake(self._wake.set)
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = float(next(delays))
                log.warning("wake channel lost; resubscribing in %.1f s (polling meanwhile)", delay)
                await asyncio.sleep(delay)

    async def run_window(self, scheduled_ms: int) -> WindowReport:
        """One cron tick's run: take the lease, drain until the window ends or the next run takes over."""
        self.last_window_started = time.monotonic()
        report = WindowReport(scheduled_ms=scheduled_ms, started_ms=_now_ms())
        span = self._telemetry.start_window(report)
        try:
            interval = self._settings.pump_interval
            ends_at = scheduled_ms / 1000 + interval
            if time.time() >= ends_at:
                # A tick arq caught up late (its loop was blocked): its window is already someone else's.
                report.outcome = "stale"
                return report
            return await self._run(report, ends_at, interval)
        finally:
            self._telemetry.end_window(span, report)

    async def _run(self, report: WindowReport, ends_at: float, interval: float) -> WindowReport:
        token = await self._take_lease()
        if token is None:
            report.outcome = "lease busy"
            return report
        # Run a little past the window so the next tick's run (started up to a poll late) takes over
        # by handover, not after a gap.
        grace = handover_grace(interval)
        try:
            await self._drain(token, ends_at + grace, report)
        finally:
            try:
                await self._store.pump.release_run_lease(self._worker_id, token)
            except Exception:
                log.warning("could not release the pump lease; it expires in %d ms", RUN_LEASE_MS)
            report.ended_ms = _now_ms()
            log.info(
                "pump window %d: claimed %d in %d claims, held back %d, reaped %d, %s",
                report.scheduled_ms,
                report.claimed,
                report.claims,
                report.endpoints_held_back,
                report.reaped,
                report.outcome,
                extra={"worker_id": self._worker_id},
            )
        return report

    async def _take_lease(self) -> str | None:
        pump = self._store.pump
        token = await pump.acquire_run_lease(self._worker_id, RUN_LEASE_MS)
        if token is None:
            await pump.request_handover(self._worker_id)
            give_up = time.monotonic() + RUN_LEASE_MS / 1000 + 1
            while token is None and time.monotonic() < give_up and not self._stopping.is_set():
                await asyncio.sleep(0.005)
                token = await pump.acquire_run_lease(self._worker_id, RUN_LEASE_MS)
        if token is not None:
            await pump.clear_handover(self._worker_id)
        return token

    async def _drain(self, token: str, until: float, report: WindowReport) -> None:
        pump = self._store.pump
        settings = self._settings
        last_refresh = last_reap = last_beat = 0.0
        delays = backoff.expo(base=2, factor=0.05, max_value=5.0)
        next(delays)
        while not self._stopping.is_set() and time.time() < until:
            try:
                tick = time.monotonic()
                if tick - last_refresh >= LEASE_REFRESH_S:
                    held = await pump.refresh_run_lease(self._worker_id, token, RUN_LEASE_MS)
                    if held is None:
                        report.outcome = "lease lost"
                        return
                    if held == "handover":
                        report.outcome = "handed over"
                        return
                    last_refresh = tick
                if tick - last_reap >= REAP_EVERY_S:
                    report.reaped += len(await pump.reap())
                    last_reap = tick
                if tick - last_beat >= HEARTBEAT_EVERY_S:
                    await pump.heartbeat(
                        self._worker_id,
                        {
                            "last_window_ms": report.scheduled_ms,
                            "lag_ms": max(0, report.started_ms - report.scheduled_ms),
                            "interval_ms": int(settings.pump_interval * 1000),
                        },
                    )
                    last_beat = tick
                capacity = min(settings.worker_concurrency - self._sender.outstanding, MAX_DELIVERIES_PER_CLAIM)
                next_ms: int | None = None
                if capacity > 0:
                    self._wake.clear()
                    self._sender.progress.clear()
                    claim = await pump.claim(
                        self._worker_id,
                        horizon_ms=HORIZON_MS,
                        max_endpoints=MAX_ENDPOINTS_PER_CLAIM,
                        max_deliveries=capacity,
                    )
                    self._sender.submit(claim)
                    report.claims += 1
                    report.claimed += len(claim.deliveries)
                    report.endpoints_held_back += claim.skipped
                    self._telemetry.claimed_some(len(claim.deliveries), claim.skipped)
                    if len(claim.deliveries) >= capacity:
                        await asyncio.sleep(0)  # more is waiting: go again at once
                        continue
                    next_ms = claim.next_active_ms
                await self._sleep(next_ms, until, last_refresh)
                delays = backoff.expo(base=2, factor=0.05, max_value=5.0)
                next(delays)
            except asyncio.CancelledError:
                raise
            except Exception:  # the one broad catch of the pump loop: log, back off, carry on
                report.errors += 1
                delay = float(backoff.full_jitter(next(delays))) + 0.01
                log.warning(
                    "pump iteration failed; retrying in %.2f s",
                    delay,
                    exc_info=True,
                    extra={"worker_id": self._worker_id},
                )
                await asyncio.sleep(delay)

    async def _sleep(self, next_ms: int | None, until: float, last_refresh: float) -> None:
        """Sleep until work may be due, a wake, freed capacity, a lease refresh, or the window's end."""
        now = time.time()
        timeout = IDLE_POLL_S if next_ms is None else max(0.001, next_ms / 1000 - now)
        timeout = min(
            timeout, IDLE_POLL_S, max(0.0, until - now), max(0.001, last_refresh + LEASE_REFRESH_S - time.monotonic())
        )
        if timeout <= 0:
            return
        wake = asyncio.create_task(self._wake.wait())
        progress = asyncio.create_task(self._sender.progress.wait())
        try:
            await asyncio.wait({wake, progress}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            progress.cancel()


def handover_grace(interval: float) -> float:
    """How long a run drains past its window's end, waiting for the next run to take over."""
    return min(interval / 2, 5.0)


def _now_ms() -> int:
    return int(time.time() * 1000)
