"""Overload: 429/503 pause the whole endpoint; Retry-After is honoured to the millisecond; recovery is paced."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import math
import time

import pytest
from aiohttp import web

from core.settings import Settings
from core.store import Store
from tests.pumping import make_endpoint, running_worker, send
from tests.receiver import Receiver, Reply, max_in_window

pytestmark = pytest.mark.slow


async def test_no_request_arrives_before_a_retry_after_in_seconds_expires(store: Store, settings: Settings) -> None:
    """Each 429 asks for 1 s; every request after a 429 must come at least 1 s after that answer."""

    def script(n: int, _request: web.Request) -> Reply:
        return Reply(429, {"Retry-After": "1"}) if n in (0, 3) else Reply()

    receiver = await Receiver(script).start()
    try:
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=6000, max_in_flight=1)
        await send(store, 8, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(8, timeout=15)
        _assert_none_early(receiver, statuses=(429,), wait=1.0)
    finally:
        await receiver.stop()


async def test_no_request_arrives_before_a_retry_after_http_date(store: Store, settings: Settings) -> None:
    def script(n: int, _request: web.Request) -> Reply:
        if n == 0:
            # HTTP dates have 1 s resolution: ask for "2 s from now", which is 1..2 s of real wait.
            return Reply(503, {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)})
        return Reply()

    receiver = await Receiver(script).start()
    try:
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=6000, max_in_flight=1)
        await send(store, 3, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(3, timeout=15)
        answered_at = receiver.answered[0][0]
        asked_until = math.floor(answered_at + 2)  # the date's second, rounded down by formatdate
        assert all(r.at >= asked_until for r in receiver.received[1:])
    finally:
        await receiver.stop()


async def test_a_receiver_that_takes_nothing_pauses_the_whole_endpoint_until_a_success(
    store: Store, settings: Settings
) -> None:
    """503s in a row (no Retry-After) from a receiver that has taken nothing: the first two are taken
    for congestion (the pace is cut, nothing waits), from the third on the whole endpoint pauses on the
    exponential schedule, and the success that follows resets it. (That the pause grows with the level
    is the pure policy's job: tests/test_retry_policy.py.)"""

    def script(n: int, _request: web.Request) -> Reply:
        return Reply(503) if n < 5 else Reply()

    receiver = await Receiver(script).start()
    try:
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=60000, max_in_flight=1)
        await send(store, 2, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(7, timeout=15)
        gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:6], strict=False)]
        # backoff_base 0.2 s: a pause after the k-th 503 is at least base/2 (the jitter floor).
        assert all(gap >= settings.backoff_base / 2 for gap in gaps[2:]), gaps
        flow = await store.endpoints.flow(eid)
        assert flow.backoff_level == 0  # reset by the success that followed
    finally:
        await receiver.stop()


async def test_recovery_after_an_outage_never_exceeds_the_limit(store: Store, settings: Settings) -> None:
    """The receiver answers 503 for two pump intervals, then recovers: all delivered, never a burst."""
    outage_until = 0.0

    def script(_n: int, _request: web.Request) -> Reply:
        return Reply(503) if time.time() < outage_until else Reply()

    receiver = await Receiver(script).start()
    try:
        rate = 600  # 10/s
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=rate, max_in_flight=10)
        dids = await send(store, 60, endpoint_ids=[eid])
        outage_until = time.time() + 2 * settings.pump_interval
        async with running_worker(settings):
            while await store.redis.hget(f"hp:ep:{eid}:count", "succeeded") != str(len(dids)):
                await asyncio.sleep(0.1)
        ok_times = [at for at, status in receiver.answered if status == 200]
        assert len(ok_times) == len(dids)
        # +1: the receiver's clock carries this box's scheduling jitter (hookpump's own send times are
        # checked strictly in tests/test_worker_processes.py). How fast the pace comes back after an
        # outage: tests/test_adaptive_pacing.py.
        assert max_in_window([r.at for r in receiver.received]) <= math.ceil(rate / 60) + 1 + 1
    finally:
        await receiver.stop()


async def test_a_pause_holds_every_delivery_of_the_endpoint(store: Store, settings: Settings) -> None:
    """A 429 on one delivery stops the others too: they all wait for the Retry-After."""

    def script(n: int, _request: web.Request) -> Reply:
        return Reply(429, {"Retry-After": "1"}) if n == 0 else Reply()

    receiver = await Receiver(script).start()
    try:
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=600, max_in_flight=1)
        await send(store, 5, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(6, timeout=15)
        _assert_none_early(receiver, statuses=(429,), wait=1.0)
        flow = await store.endpoints.flow(eid)
        assert flow.pause_reason is not None and flow.pause_reason.value == "retry_after"
    finally:
        await receiver.stop()


def _assert_none_early(receiver: Receiver, *, statuses: tuple[int, ...], wait: float) -> None:
    for answered_at, status in receiver.answered:
        if status in statuses:
            early = [r.at - answered_at for r in receiver.received if answered_at < r.at < answered_at + wait]
            assert not early, f"requests {early} s after a {status} that asked for {wait} s"


async def test_a_429_storm_never_gets_an_early_request(store: Store, settings: Settings) -> None:
    """Five busy endpoints answer 429 (Retry-After: 1) to everything for 2 s, then recover: on every
    endpoint, no request arrives before the Retry-After of the last 429 it sent has passed."""
    storm_until = time.time() + 2.0

    def script(_n: int, _request: web.Request) -> Reply:
        return Reply(429, {"Retry-After": "1"}) if time.time() < storm_until else Reply()

    receiver = await Receiver(script).start()
    try:
        paths = [f"/busy{i}" for i in range(5)]
        for path in paths:
            eid = await make_endpoint(store, receiver.url(path), rate_limit_per_minute=1200, max_in_flight=1)
            await send(store, 10, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(50 + 5, timeout=30)  # all delivered, after at least one 429 each
            while int(await store.redis.hget("hp:count", "succeeded") or 0) < 50:
                await asyncio.sleep(0.05)
        for path in paths:
            arrivals = receiver.for_path(path)
            refused = [r for r in arrivals if r.at < storm_until]
            assert refused, f"{path} was never refused: the storm did not reach it"
            for before, after in itertools.pairwise(arrivals):
                if before.at < storm_until:  # `before` got a 429 asking for 1 s
                    assert after.at - before.at >= 1.0, f"{path}: a request {after.at - before.at:.3f} s after a 429"
    finally:
        await receiver.stop()
