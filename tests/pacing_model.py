"""The pump's pacing scripts (claim.lua, complete.lua with _flow.lua) run on a virtual clock against
modelled receivers: a whole minute of a receiver's life in a fraction of a second, with no
scheduling jitter, so the control law's goodput and refusals can be asserted exactly.

The scripts are the real ones, in a real Redis; what is modelled is the worker around them (a send
goes out at its slot, the answer comes back after `latency_ms`) and the receiver. The worker itself,
with real receivers on loopback, is tested in tests/test_adaptive_pacing.py and measured by
bench/adaptive.py.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.store import Completion, NewMessage, Store
from delivery.signing import generate_secret
from tests.limiters import Bucket, Strict

PAYLOAD = json.dumps({"type": "order.paid"})


class Limited:
    """A receiver behind a limiter (tests/limiters.py) of `rate(t)` requests/s, answering `refusal` when
    it refuses."""

    def __init__(self, limiter: Strict | Bucket, rate: Callable[[float], float], refusal: int = 503) -> None:
        self.limiter = limiter
        self.rate = rate
        self.refusal = refusal

    def __call__(self, at_s: float, _n: int) -> int:
        return 200 if self.limiter.take(at_s, self.rate(at_s)) else self.refusal


def strict(rate: float | Callable[[float], float]) -> Limited:
    return Limited(Strict(), rate if callable(rate) else lambda _t: rate)


def bucket(rate: float | Callable[[float], float], burst_seconds: float = 0.5) -> Limited:
    return Limited(Bucket(burst_seconds), rate if callable(rate) else lambda _t: rate, refusal=429)


class Flaky:
    """Refuses a fixed share of requests (503) whatever the rate, drawn from a seeded generator, in
    front of `then` (or of nothing)."""

    def __init__(self, share: float, then: Callable[[float, int], int] | None = None, seed: int = 7) -> None:
        self.share = share
        self.then = then
        self.random = random.Random(seed)

    def __call__(self, at_s: float, n: int) -> int:
        status = self.then(at_s, n) if self.then else 200
        if status == 200 and self.random.random() < self.share:
            return 503
        return status


@dataclass
class Run:
    answers: list[tuple[float, int]] = field(default_factory=list)  # (arrival, s into the run; status)
    flows: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # with trace=True: the flow hash

    def ok_between(self, start: float, end: float) -> int:
        return sum(1 for at, status in self.answers if start <= at < end and status < 300)

    def refused_share(self, start: float, end: float) -> float:
        window = [status for at, status in self.answers if start <= at < end]
        return sum(1 for s in window if s in (429, 503)) / max(1, len(window))


async def simulate(
    store: Store,
    receiver: Callable[[float, int], int],
    *,
    configured_per_minute: int,
    seconds: float,
    backlog: int,
    latency_ms: float = 5.0,
    max_in_flight: int = 10,
    trace: bool = False,
) -> Run:
    """Drain `backlog` messages to one endpoint for `seconds` of virtual time; what the receiver saw."""
    endpoint = await store.endpoints.create(
        {"url": "http://127.0.0.1:9/model", "rate_limit_per_minute": configured_per_minute,
         "max_in_flight": max_in_flight, "event_types": None, "headers": {}, "description": "",
         "enabled": True, "trace_propagation": True},
        generate_secret(),
    )
    for start in range(0, backlog, 1000):
        await store.messages.ingest([NewMessage("order.paid", PAYLOAD, [endpoint.id])] * min(1000, backlog - start))
    pump = store.pump
    t0 = int(time.time() * 1000) + 1000  # after every delivery's creation
    now = float(t0)
    end = t0 + seconds * 1000
    events: list[tuple[float, int, str, list[object]]] = []  # (ms, seq, kind, data)
    seq = 0
    run = Run()
    next_claim = now
    n = 0
    while now < end:
        if next_claim <= (events[0][0] if events else math.inf):
            now = next_claim
            claim = await pump.claim("model", horizon_ms=200, max_endpoints=10, max_deliveries=1000, at_ms=int(now))
            for d in claim.deliveries:
                seq += 1
                heapq.heappush(events, (max(d.slot_ms, now), seq, "send", [d.id, d.attempt]))
            next_claim = now + 20
            continue
        at, _seq, kind, data = heapq.heappop(events)
        now = at
        if kind == "send":
            did, attempt = data
            arrival = now + latency_ms / 2
            status = receiver((arrival - t0) / 1000, n)
            n += 1
            run.answers.append(((arrival - t0) / 1000, status))
            seq += 1
            heapq.heappush(events, (now + latency_ms, seq, "answer", [did, attempt, status, now]))
        else:
            did, attempt, status, started = data
            answer = (Completion(did, attempt, "succeeded", status_code=status, started_ms=int(started))
                      if status < 300 else  # due: the backoff pause, should this be an outage
                      Completion(did, attempt, "overloaded", due_ms=int(now) + 5000, status_code=status,
                                 pause_reason="backoff", started_ms=int(started)))
            await pump.complete([answer], at_ms=int(now))
            if trace:  # the loop's state after every answer, for tuning it
                run.flows.append(((now - t0) / 1000, await store.redis.hgetall(f"hp:ep:{endpoint.id}:flow")))
            next_claim = min(next_claim, now + 1)
    return run
