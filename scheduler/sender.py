"""The worker's sending side: hold each claimed delivery until its paced slot, attempt it, and report
results back to Redis in batches.

Lives for the whole worker process (pump runs come and go; in-flight requests outlive them), and is
the only place that turns an attempt's outcome into the delivery's next state.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import backoff

from core.settings import Settings
from core.store import Claim, ClaimedDelivery, ClaimedEndpoint, Completion, PermitAsk, Store
from core.telemetry import Telemetry, scope, traceparent_of
from delivery.attempt import AttemptReport, attempt_delivery
from delivery.client import DeliveryClient
from delivery.outcome import Outcome
from delivery.retry_policy import overload_pause, retry_allowed, retry_delay
from scheduler.instruments import WorkerTelemetry
from scheduler.permits import PermitBatcher

log = logging.getLogger(__name__)

# Results are written in batches: one script call per FLUSH_SIZE results or FLUSH_DELAY seconds.
FLUSH_SIZE = 256
FLUSH_DELAY = 0.003
# Endpoints paced at least this many ms apart (<= 100 requests/s) get strict slots: see _wait_for_slot.
STRICT_INTERVAL_MS = 10.0
# Faster endpoints take send permits (_gate_fast_send): one ask covers the sends of this many ms,
# and a send whose permit's moment passed by more than this (or half an interval) asks again.
PERMIT_RUN_MS = 50.0
PERMIT_LATE_MS = 2.0
# A strict slot goes at least (1 - GAP_ROOM) of its distance from the slot before after the send before
# it (the adaptive pace runs 2 % under what the receiver takes, so this much is within its room).
GAP_ROOM = 0.01


class Sender:
    def __init__(
        self, store: Store, client: DeliveryClient, settings: Settings, telemetry: WorkerTelemetry | None = None
    ) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._telemetry = telemetry or WorkerTelemetry(Telemetry.disabled(settings))
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[Completion] = []
        self._results_ready = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # Pauses this worker has learnt of from its own results: a delivery already claimed for a
        # slot after the endpoint paused is released instead of sent early.
        self._paused_until_ms: dict[str, int] = {}
        self._stopping = False
        self._closing = False
        # Fast endpoints (see _gate_fast_send): one gate each, where their sends wait for permits.
        self._gates: dict[str, _Gate] = {}
        # Strict-slot endpoints: the slot and the moment of this worker's last send to each (see
        # _wait_for_slot).
        self._last_strict_send: dict[str, tuple[float, float]] = {}
        self._permits = PermitBatcher(store)
        # Wakes the pump when capacity frees up or state changed.
        self.progress = asyncio.Event()

    @property
    def outstanding(self) -> int:
        """Claimed deliveries not yet reported (waiting for their slot or in flight)."""
        return len(self._tasks)

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="hookpump-flush")

    def submit(self, claim: Claim) -> None:
        for delivery in claim.deliveries:
            endpoint = claim.endpoints[delivery.endpoint_id]
            task = asyncio.create_task(self._deliver(endpoint, delivery), name=f"deliver-{delivery.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, endpoint: ClaimedEndpoint, delivery: ClaimedDelivery) -> None:
        try:
            sent_at = await self._wait_for_slot(endpoint, delivery)
            if sent_at is None:
                return
            paused_until = self._paused_until_ms.get(endpoint.id, 0)
            if self._stopping or paused_until > sent_at * 1000:
                self._release(delivery, max(paused_until, delivery.slot_ms))
                return
            span = self._telemetry.start_attempt(endpoint, delivery)  # None when tracing is off
            with scope(span):
                report = await attempt_delivery(
                    self._client,
                    url=endpoint.url,
                    msg_id=delivery.message_id,
                    event_type=delivery.event_type,
                    payload_json=delivery.payload_json,
                    secrets=endpoint.secrets,
                    extra_headers=endpoint.headers,
                    secret_headers=endpoint.secret_headers,
                    # The receiver's span becomes a child of this attempt's, unless the endpoint opted out.
                    traceparent=traceparent_of(span) if span is not None and endpoint.trace_propagation else None,
                    attempt_number=delivery.attempt,
                    trigger=delivery.trigger,
                    now=sent_at,
                )
                completion = self._next_state(endpoint, delivery, report)
                self._telemetry.attempted(endpoint.id, completion, report, span)
            self._report(completion)
        except asyncio.CancelledError:
            # Stopped while waiting or sending: give it back so another run sends it, not a lease expiry.
            self._release(delivery, delivery.slot_ms)
            raise
        except Exception:  # one broad catch per delivery: a bug here must not lose the delivery
            log.exception(
                "delivery %s: attempt crashed; it will be retried",
                delivery.id,
                extra={"delivery_id": delivery.id, "endpoint_id": endpoint.id},
            )
            self._report(
                Completion(
                    delivery.id,
                    delivery.attempt,
                    "retry",
                    due_ms=_now_ms() + int(self._settings.retry_base * 1000),
                    error="internal error in hookpump while attempting",
                )
            )

    async def _wait_for_slot(self, endpoint: ClaimedEndpoint, delivery: ClaimedDelivery) -> float | None:
        """Sleep until the delivery's paced slot; the moment it may be sent (unix seconds, which the
        attempt records as its start), or None if it was released instead.

        Slots are spaced in Redis across all workers, but a worker whose event loop stalled would
        send several past-due slots at once. So a send that missed its slot by more than half an
        interval goes back to the queue for a fresh slot. That keeps every 1-s window within
        ceil(rate/60) + 1 sends. For fast endpoints (interval under STRICT_INTERVAL_MS), where it
        would waste much work, sends go through _gate_fast_send instead.
        """
        interval = endpoint.interval_ms / 1000
        slot = delivery.slot_ms / 1000
        wait = slot - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if endpoint.interval_ms < STRICT_INTERVAL_MS:
            return await self._gate_fast_send(endpoint, delivery)
        # A send that went out late is not caught up by sending the next one early: a limiter with no
        # burst allowance refuses two sends closer than its interval, whatever the average rate.
        # So a send keeps at least its slot's distance from the slot before (less GAP_ROOM) after the
        # send before it; that distance is the pace's interval, or a probe's shorter one (_flow.lua).
        # It is held back a quarter of an interval past its slot at the most: a loaded event loop
        # that is late on every send would otherwise carry the lateness on and on, until every send
        # missed its slot by half an interval and went back to the queue.
        while True:
            last_slot, last_sent = self._last_strict_send.get(endpoint.id, (0.0, 0.0))
            if slot <= last_slot:
                break
            wait = min(last_sent + (slot - last_slot) * (1 - GAP_ROOM), slot + interval / 4) - time.time()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        now = time.time()
        if now - slot > interval / 2:
            self._telemetry.late_requeued(endpoint.id)
            self._release(delivery, _now_ms())
            return None
        self._last_strict_send[endpoint.id] = (slot, now)
        return now

    async def _gate_fast_send(self, endpoint: ClaimedEndpoint, delivery: ClaimedDelivery) -> float:
        """The moment a send to a fast endpoint may go (unix seconds), spaced an interval after the
        endpoint's last send of any worker, with no 1-s window over ceil(rate/60) + 1. The moment is
        the send's recorded start, so the bound holds on recorded send times whatever the workers'
        event loops do.

        Until the deadline of this worker's latest solo claim on the endpoint (no other worker can
        send to it before then, see claim.lua), the send is spaced here, after this worker's own
        sends to it (_pace_solo), with no Redis call. Otherwise it waits for a permit
        (scheduler/permits.py and permit.lua): the endpoint's sends queue at its gate, and one pacer
        task per endpoint asks for a run of them at once and lets each go at its moment. A send
        whose moment the pacer missed by more than PERMIT_LATE_MS (a stalled event loop) is not
        sent late in a bunch: the pacer asks again for it and the sends behind it."""
        gate = self._gates.setdefault(endpoint.id, _Gate())
        gate.interval_ms = endpoint.interval_ms  # the newest claim knows the endpoint's pace best
        gate.solo_until = max(gate.solo_until, endpoint.solo_until_ms / 1000)
        if gate.solo_until > time.time():
            moment = await _pace_solo(gate)
            if moment is not None:
                return moment
        ticket: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        gate.waiting.append((f"{delivery.id}.{delivery.attempt}", ticket))
        if gate.pacer is None or gate.pacer.done():
            gate.pacer = asyncio.create_task(self._pace(endpoint.id, gate), name=f"pace-{endpoint.id}")
        return await ticket

    async def _pace(self, endpoint_id: str, gate: _Gate) -> None:
        """Hand out permits to the sends waiting at one endpoint's gate, in order, until none waits."""
        waiting = gate.waiting
        while True:
            while waiting and waiting[0][1].done():  # sends cancelled while they waited
                waiting.popleft()
            if not waiting:
                return
            interval_ms = gate.interval_ms
            run = list(itertools.islice(waiting, max(1, int(PERMIT_RUN_MS / interval_ms))))
            ask = PermitAsk(endpoint_id, math.ceil(1000 / interval_ms) + 1, interval_ms, [sid for sid, _ in run])
            try:
                permits = await self._permits.take(ask)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # each send handles it as its own failure (see _deliver)
                for _, ticket in run:
                    if not ticket.done():
                        ticket.set_exception(exc)
                continue
            # Sends of a later solo claim (_pace_solo) keep an interval away from these.
            gate.book([permits.local_seconds(m) for m in permits.grant.moments_ms])
            late_s = max(PERMIT_LATE_MS, interval_ms / 2) / 1000
            on_time = True
            for (_, ticket), moment_ms in zip(run, permits.grant.moments_ms, strict=False):
                at = permits.local_seconds(moment_ms)
                wait = at - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if time.time() - at > late_s:
                    on_time = False  # ask again for this send and the ones behind it
                    break
                waiting.popleft()
                if not ticket.done():
                    ticket.set_result(moment_ms / 1000)
            if on_time and permits.grant.retry_ms:
                await asyncio.sleep(max(0.0, permits.local_seconds(permits.grant.retry_ms) - time.time()))

    def _next_state(self, endpoint: ClaimedEndpoint, delivery: ClaimedDelivery, report: AttemptReport) -> Completion:
        """Turn an attempt's outcome into what happens next (the retry policy lives in delivery/)."""
        now = _now_ms()
        s = self._settings
        base = Completion(
            delivery.id,
            delivery.attempt,
            "failed",
            status_code=report.status_code,
            error=report.error or "",
            record=report.record,
            started_ms=report.started_ms,
        )
        if report.outcome is Outcome.SUCCEEDED:
            return _with(base, outcome="succeeded", error="")
        if report.outcome is Outcome.GONE:
            return _with(base, outcome="gone", error=report.error or "the receiver answered 410 Gone")
        if report.outcome is Outcome.FAILED:
            return base
        if not retry_allowed(delivery.budget_start_ms, now, s.retry_horizon):
            return _with(
                base,
                error=f"gave up after {delivery.attempt} attempts over "
                f"{(now - delivery.budget_start_ms) / 3_600_000:.1f} h: {report.error or ''}",
            )
        if report.outcome is Outcome.OVERLOADED:
            # The endpoint's pace decides what a 429/503 means (core/store/lua/_flow.lua): a congestion
            # cut while the receiver takes some, this pause only once it takes nothing (or it asked
            # for one with Retry-After).
            pause = overload_pause(endpoint.backoff_level, report.retry_after, base=s.backoff_base, cap=s.backoff_cap)
            # Round up: a Retry-After must never be cut short by millisecond rounding.
            until = now + math.ceil(pause * 1000)
            reason = "backoff"
            if report.retry_after is not None:
                reason = "retry_after"
                self._paused_until_ms[endpoint.id] = max(until, self._paused_until_ms.get(endpoint.id, 0))
            return _with(base, outcome="overloaded", due_ms=until, pause_reason=reason)
        delay = retry_delay(delivery.attempt, base=s.retry_base, cap=s.retry_cap)
        return _with(base, outcome="retry", due_ms=now + math.ceil(delay * 1000))

    def _release(self, delivery: ClaimedDelivery, due_ms: int) -> None:
        self._report(Completion(delivery.id, delivery.attempt, "released", due_ms=due_ms))

    def _report(self, completion: Completion) -> None:
        self._results.append(completion)
        self._results_ready.set()

    async def _flush_forever(self) -> None:
        """The one writer of results; on close it writes whatever is left, then returns."""
        while True:
            await self._results_ready.wait()
            if len(self._results) < FLUSH_SIZE and not self._closing:
                await asyncio.sleep(FLUSH_DELAY)  # let a few more results join this batch
            await self.flush()
            if self._closing and not self._results:
                return

    async def flush(self) -> None:
        """Write every buffered result; on a Redis outage keep them and retry with backoff."""
        self._results_ready.clear()
        while self._results:
            batch, self._results = self._results[: FLUSH_SIZE * 4], self._results[FLUSH_SIZE * 4 :]
            delays = _reconnect_delays()
            while True:
                try:
                    paused = await self._store.pump.complete(batch)
                    for eid, until in paused.items():
                        self._paused_until_ms[eid] = max(until, self._paused_until_ms.get(eid, 0))
                    break
                except asyncio.CancelledError:
                    self._results = batch + self._results
                    raise
                except Exception:
                    delay = next(delays)
                    log.warning("could not record %d results; retrying in %.1f s", len(batch), delay, exc_info=True)
                    await asyncio.sleep(delay)
        self.progress.set()

    async def drain(self, grace_seconds: float) -> None:
        """Stop: release what waits for a slot, let in-flight requests finish (bounded), write results.

        The flusher is asked to finish rather than cancelled: cancelling it mid-write would leave
        its batch unwritten (those deliveries would then be sent again after their leases expire).
        """
        self._stopping = True
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        pacers = [gate.pacer for gate in self._gates.values() if gate.pacer is not None]
        for pacer in pacers:
            pacer.cancel()
        await asyncio.gather(*pacers, return_exceptions=True)
        await self._permits.close()
        self._closing = True
        self._results_ready.set()
        if self._flusher is not None:
            try:
                await asyncio.wait_for(self._flusher, timeout=30)
            except TimeoutError:
                log.error("could not record %d results before stopping; their deliveries will be sent "
                          "again when their leases expire", len(self._results))


@dataclasses.dataclass
class _Gate:
    """A fast endpoint's sends waiting for permits (see Sender._gate_fast_send)."""

    waiting: collections.deque[tuple[str, asyncio.Future[float]]] = dataclasses.field(
        default_factory=collections.deque)  # (send id, its ticket), in send order
    interval_ms: float = 1.0
    pacer: asyncio.Task[None] | None = None
    # Solo pacing (_pace_solo), unix seconds by this process's clock: the deadline of this worker's
    # latest solo claim, its latest solo send, and the moments of its permits still to come.
    solo_until: float = 0.0
    last_send: float = 0.0
    booked: list[float] = dataclasses.field(default_factory=list)

    def book(self, moments: list[float]) -> None:
        self.booked += moments
        self.upcoming_permits(time.time())

    def upcoming_permits(self, now: float) -> list[float]:
        """The booked permit moments a send from now on could come within an interval of, in order
        (older ones are dropped here, so a gate that only ever takes permits keeps none for long)."""
        interval = self.interval_ms / 1000
        self.booked = sorted(b for b in self.booked if b > now - interval)
        return self.booked


async def _pace_solo(gate: _Gate) -> float | None:
    """A send's moment, an interval after this worker's last solo send to the endpoint and an interval
    away from its permits still to come, or None when that would leave less than an interval before
    the solo deadline (a permit then spaces it after any other worker's sends).

    Any send of this worker before its latest solo claim's deadline is safe, whichever claim it
    belongs to: another worker's sends take permits, which start after that deadline (permit.lua),
    and it can have no solo claim while this worker's leases are live. This saves a Redis call per
    send: Redis's CPU per 1,000 deliveries fell by about a third for a lone worker sending to 100
    endpoints paced at 1,000/s (BENCHMARKS.md, "Throughput, fifth step")."""
    interval = gate.interval_ms / 1000
    late = max(PERMIT_LATE_MS, gate.interval_ms / 2) / 1000
    while True:
        now = time.time()
        moment = max(now, gate.last_send + interval)
        for booked in gate.upcoming_permits(now):
            if abs(moment - booked) < interval:
                moment = booked + interval
        if moment > gate.solo_until - interval:
            return None
        gate.last_send = moment
        if moment <= now:
            return moment
        await asyncio.sleep(moment - now)
        if time.time() - moment <= late:
            return moment
        # Woke too late (a stalled event loop): a fresh moment, rather than a burst of late sends.


def _reconnect_delays() -> Iterator[float]:
    """Waits between attempts to reach Redis again: exponential with jitter, capped at 5 s."""
    for value in backoff.expo(base=2, factor=0.05, max_value=5.0):
        if value is not None:
            yield float(backoff.full_jitter(value)) + 0.01


def _with(c: Completion, **changes: Any) -> Completion:
    return dataclasses.replace(c, **changes)


def _now_ms() -> int:
    return int(time.time() * 1000)
