"""Send permits for fast endpoints (permit.lua through scheduler/permits.py), on a real Redis: a run
of sends gets moments spaced by the endpoint's interval within its 1-s bound, endpoints are counted
apart, a send asked for again gives up its unused permit, and concurrent asks share script calls.
A worker whose claims on an endpoint are solo (claim.lua) paces its sends itself, with no permit."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest

from core.settings import Settings
from core.store import PermitAsk, Store
from core.store.pump import SOLO_GRACE_MS
from scheduler.permits import PermitBatcher
from scheduler.sender import _Gate
from tests.api import api_client
from tests.pumping import make_endpoint, recorded_send_times, running_worker, send, wait_until
from tests.receiver import Receiver, max_in_window


def ask(eid: str, bound: int, interval_ms: float, *send_ids: str) -> PermitAsk:
    return PermitAsk(eid, bound, interval_ms, list(send_ids))


async def test_a_run_gets_moments_an_interval_apart_up_to_the_bound_and_when_to_ask_again(store: Store) -> None:
    now_ms, (grant,) = await store.pump.send_permits([ask("ep_a", 5, 10, *(f"d{i}.1" for i in range(8)))])

    moments = grant.moments_ms
    assert len(moments) == 5 and moments[0] == now_ms  # nothing sent before: the first may go now
    assert [b - a for a, b in itertools.pairwise(moments)] == [10, 10, 10, 10]
    assert grant.retry_ms == moments[0] + 1000  # when the oldest of the window leaves it
    assert await store.redis.zcard("hp:ep:ep_a:permits") == 5
    assert 0 < await store.redis.pttl("hp:ep:ep_a:permits") <= 2000 + 40


async def test_fractional_intervals_keep_their_average_pace(store: Store) -> None:
    _now, (grant,) = await store.pump.send_permits([ask("ep_f", 100, 1000 / 7, *(f"f{i}.1" for i in range(7)))])
    gaps = [b - a for a, b in itertools.pairwise(grant.moments_ms)]
    assert set(gaps) <= {142, 143} and sum(gaps) in (857, 858)  # 6 intervals of 142.86 ms


async def test_endpoints_are_counted_apart_and_a_later_ask_follows_the_last_permit(store: Store) -> None:
    _now, first = await store.pump.send_permits([ask("ep_a", 2, 5, "a1.1"), ask("ep_b", 2, 5, "b1.1", "b2.1")])
    assert [len(g.moments_ms) for g in first] == [1, 2]

    _now, second = await store.pump.send_permits([ask("ep_a", 2, 5, "a2.1", "a3.1"), ask("ep_b", 2, 5, "b3.1")])
    a, b = second
    assert len(a.moments_ms) == 1 and a.moments_ms[0] - first[0].moments_ms[0] >= 5  # after ep_a's last permit
    assert a.retry_ms == first[0].moments_ms[0] + 1000  # ep_a's window is full after its second
    assert b.moments_ms == [] and b.retry_ms == first[1].moments_ms[0] + 1000


async def test_a_send_asked_for_again_gives_up_its_unused_permit(store: Store) -> None:
    _now, (first,) = await store.pump.send_permits([ask("ep_r", 3, 5, "r1.1", "r2.1", "r3.1")])
    assert len(first.moments_ms) == 3
    # The worker woke too late for r2 and r3: it asks again for them (and one more). They are not
    # counted twice, so the window (bound 3) still has room for r2 and r3, not for r4.
    _now, (again,) = await store.pump.send_permits([ask("ep_r", 3, 5, "r2.1", "r3.1", "r4.1")])
    assert len(again.moments_ms) == 2 and again.retry_ms == first.moments_ms[0] + 1000
    assert again.moments_ms[0] >= first.moments_ms[0] + 5
    assert await store.redis.zcard("hp:ep:ep_r:permits") == 3


async def test_concurrent_asks_share_script_calls_and_keep_the_bound(store: Store) -> None:
    calls = 0
    send_permits = store.pump.send_permits

    async def counted(asks: list[PermitAsk]) -> object:
        nonlocal calls
        calls += 1
        return await send_permits(asks)

    store.pump.send_permits = counted  # type: ignore[method-assign,assignment]
    batcher = PermitBatcher(store)
    try:
        answers = await asyncio.gather(*(batcher.take(ask(f"ep_{i % 4}", 30, 2, f"c{i}.1")) for i in range(100)))
    finally:
        await batcher.close()

    assert sum(len(a.grant.moments_ms) for a in answers) == 100  # 25 per endpoint: within the bound of 30
    assert calls < 10  # 100 asks together: a few batches, not one call each
    for eid in range(4):
        moments = sorted(m for i, a in enumerate(answers) if i % 4 == eid for m in a.grant.moments_ms)
        assert all(b - a >= 2 for a, b in itertools.pairwise(moments))
    # The local clock of a moment is Redis's minus the measured offset (one machine here: close).
    first = answers[0]
    assert abs(first.local_seconds(first.grant.moments_ms[0]) - time.time()) < 1.0


async def test_a_claim_is_solo_only_while_no_other_workers_claims_on_the_endpoint_are_live(store: Store) -> None:
    first = await make_endpoint(store, "http://127.0.0.1:9/", rate_limit_per_minute=60_000)
    await send(store, 1, endpoint_ids=[first])
    claimed = await store.pump.claim("w0", horizon_ms=1000, max_endpoints=10, max_deliveries=1)
    assert claimed.endpoints[first].solo_until_ms == claimed.deliveries[0].slot_ms + SOLO_GRACE_MS

    store.pump.lease_ms = 300  # leases run out within the test
    eid = await make_endpoint(store, "http://127.0.0.1:9/", rate_limit_per_minute=60_000, max_in_flight=100)
    await send(store, 8, endpoint_ids=[eid])

    async def claim(worker: str, count: int) -> tuple[int, list[int]]:
        claimed = await store.pump.claim(worker, horizon_ms=1000, max_endpoints=10, max_deliveries=count)
        assert len(claimed.deliveries) == count
        return claimed.endpoints[eid].solo_until_ms, [d.slot_ms for d in claimed.deliveries]

    solo_until, slots = await claim("w1", 2)
    # Nobody else has claims: w1 may pace these itself, up to the grace (never past its own leases).
    assert SOLO_GRACE_MS > 300 and solo_until == slots[-1] + 300
    assert (await claim("w1", 1))[0] > 0  # its own earlier claims do not stand in its way
    assert (await claim("w2", 1))[0] == 0  # w1's claims are live: w2 takes permits...
    _now, (grant,) = await store.pump.send_permits([ask(eid, 1001, 1, "w2.1")])
    assert grant.moments_ms[0] >= solo_until  # ...which start after w1's solo sends may have ended
    assert (await claim("w1", 1))[0] == 0  # and now w2's claims stand in w1's way

    await asyncio.sleep(0.4 + (max(slots) - time.time() * 1000) / 1000)  # every lease so far has run out
    assert (await claim("w2", 1))[0] > 0


@pytest.mark.slow
async def test_a_lone_worker_paces_a_fast_endpoint_itself_without_permits(store: Store, settings: Settings) -> None:
    """One worker, one endpoint at 200/s (interval 5 ms, in the permit range) and a backlog of 300:
    its claims are solo, so its sends take no permit, and the send moments it records are still an
    interval apart, within the 1-s bound. (A send the worker could not get out within the solo grace
    takes a permit instead; on a loaded box a few do, so the test allows a tenth.)"""
    receiver = await Receiver().start()
    try:
        rate = 12_000
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=rate, max_in_flight=50)
        total = len(await send(store, 300, endpoint_ids=[eid]))
        with_permits: set[str] = set()  # the permit log keeps a second of sends: polled every 0.1 s

        async def all_sent() -> bool:
            with_permits.update(await store.redis.zrange(f"hp:ep:{eid}:permits", 0, -1))
            return len(receiver.received) >= total

        async with running_worker(settings):
            await wait_until(all_sent, 20, what="the backlog was sent")
        with_permits.update(await store.redis.zrange(f"hp:ep:{eid}:permits", 0, -1))
        assert len(with_permits) <= total // 10, f"{len(with_permits)} of {total} sends took a permit"
        async with api_client(settings) as client:
            sent = await recorded_send_times(client, eid, total)
        assert len(sent) == total
        # Recorded in whole ms, so 5 ms apart may read as 4.
        assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.004 - 1e-6
        assert max_in_window(sent) <= math.ceil(rate / 60) + 1
    finally:
        await receiver.stop()


def test_a_gate_keeps_only_the_permit_moments_still_to_come() -> None:
    # A worker that only ever takes permits books every one; the gate must not keep them all.
    gate = _Gate(interval_ms=5)
    now = time.time()
    gate.book([now - 2.0, now - 1.0, now + 0.5])
    gate.book([now + 0.2])
    assert gate.booked == [now + 0.2, now + 0.5]
