"""The endpoint's pace as a control loop (core/store/lua/_flow.lua): it estimates what the receiver
accepts and paces just under it, probes above it by one shorter gap, tells refusals that are not about
load from congestion, and gives a receiver that takes nothing whole-endpoint backoff and its pace back.

The law's arithmetic is checked through the real script against real Redis; its effect over minutes on
modelled receivers through the real scripts on a virtual clock (tests/pacing_model.py), where the figures
carry no scheduling jitter and can be asserted exactly; and with a real worker and real receivers (nginx
where it is installed) on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import random
import time
from pathlib import Path

import pytest

from core.settings import Settings
from core.store import Completion, Store
from tests.api import ADMIN, api_client
from tests.limiters import Limit, Nginx, require_nginx
from tests.pacing_model import Flaky, bucket, simulate, strict
from tests.pumping import make_endpoint, running_worker, send
from tests.receiver import Receiver, Reply, capacity, max_in_window

KEEP = 0.98  # _flow.lua: the pace as a share of the estimate


async def flow(store: Store, eid: str) -> dict[str, float]:
    raw = await store.redis.hgetall(f"hp:ep:{eid}:flow")
    return {k: float(v) for k, v in raw.items() if v not in ("", None) and k not in ("pause_reason", "cw")}


async def claimed(store: Store, eid: str, count: int) -> list[int]:
    """Claim `count` deliveries of the endpoint; their attempt numbers, by delivery, in claim order."""
    await send(store, count, endpoint_ids=[eid])
    claim = await store.pump.claim("test-worker", horizon_ms=1000, max_endpoints=10, max_deliveries=count)
    assert len(claim.deliveries) == count
    return claim.deliveries  # type: ignore[return-value]


def overloaded(d: object, started_ms: int) -> Completion:
    return Completion(d.id, d.attempt, "overloaded", due_ms=int(time.time() * 1000) + 60_000,  # type: ignore[attr-defined]
                      status_code=429, pause_reason="backoff", started_ms=started_ms)


def succeeded(d: object, started_ms: int | None = None) -> Completion:
    return Completion(d.id, d.attempt, "succeeded", status_code=200,  # type: ignore[attr-defined]
                      started_ms=started_ms or int(time.time() * 1000))


async def test_a_refusal_trims_the_pace_once_per_window_and_a_window_of_refusals_cuts_to_what_was_accepted(
    store: Store,
) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/hook", rate_limit_per_minute=6000)
    deliveries = await claimed(store, eid, 40)
    t0 = int(time.time() * 1000) - 4000  # sends 100 ms apart, answered now
    await store.pump.complete([succeeded(deliveries[0], t0)])
    # A refusal at the configured rate: the receiver takes less than that. One trim, not one per refusal.
    await store.pump.complete([overloaded(deliveries[1], t0 + 100)])
    trimmed = await flow(store, eid)
    assert trimmed["est"] == pytest.approx(6000) and trimmed["eff_rate"] == pytest.approx(6000 * KEEP)
    assert trimmed["w_max"] == pytest.approx(6000)
    await store.pump.complete([overloaded(deliveries[2], t0 + 200)])
    assert (await flow(store, eid))["eff_rate"] == pytest.approx(6000 * KEEP)
    # The window (16 answers over more than a second) goes on with every other request refused: the
    # receiver accepted 5 a second of the 10 sent. The pace goes just under that, not to 0.8 of the pace
    # refused.
    for i, d in enumerate(deliveries[3:16], start=3):
        await store.pump.complete([overloaded(d, t0 + 100 * i) if i % 2 else succeeded(d, t0 + 100 * i)])
    cut = await flow(store, eid)
    # The window closes early, at its 8th answer with 5 refused (a drop is found within a few
    # refusals): 3 accepted of 8 sent 100 ms apart, 253/min.
    assert cut["est"] == pytest.approx(3 * 60000 / (700 + 60000 / (6000 * KEEP)), rel=0.01)
    assert cut["eff_rate"] == pytest.approx(cut["est"] * KEEP)
    assert cut["cut_from"] == pytest.approx(6000 * KEEP)
    # Nothing pauses: the refused deliveries wait in the due set for the endpoint's next slots.
    assert cut.get("paused_until", 0) < time.time() * 1000


async def test_an_outage_steps_the_backoff_once_per_pause_not_once_per_refusal(store: Store) -> None:
    """Requests already on their way when a backoff pause began are refused too; they must not push
    the endpoint further up the exponential schedule (that would turn a 30 s outage into an hour)."""
    eid = await make_endpoint(store, "http://127.0.0.1:9/hook", rate_limit_per_minute=6000)
    deliveries = await claimed(store, eid, 7)
    sent_at = int(time.time() * 1000)
    await store.pump.complete([overloaded(d, sent_at) for d in deliveries[:3]])  # nothing ever taken
    first = await flow(store, eid)
    assert first["backoff_level"] == 1 and first["paused_until"] > time.time() * 1000
    assert first["eff_rate"] == 6000 and "est" not in first  # an outage teaches no pace
    # Sent before that pause began, answered after: the same outage.
    await store.pump.complete([overloaded(d, sent_at) for d in deliveries[3:5]])
    assert (await flow(store, eid))["backoff_level"] == 1
    # Sent after the pause began (its end, in practice), refused again: the next step.
    await store.pump.complete([overloaded(deliveries[5], int(first["paused_at"]) + 1)])
    assert (await flow(store, eid))["backoff_level"] == 2


async def drained(store: Store, settings: Settings, receiver: Receiver, url: str, *, rate: int, count: int,
                  seconds: float) -> tuple[float, dict[str, object]]:
    """An endpoint at `url` (configured at `rate`/min) with `count` messages, drained by a real worker
    until `seconds` after the first request reached `receiver`: that first arrival, and the
    endpoint's stats then."""
    eid = await make_endpoint(store, url, rate_limit_per_minute=rate, max_in_flight=10)
    await send(store, count, endpoint_ids=[eid])
    async with running_worker(settings), api_client(settings) as client:
        await receiver.wait_for(1, timeout=10)
        started = receiver.received[0].at
        await asyncio.sleep(max(0.0, started + seconds - time.time()))
        stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    return started, stats


async def _settled(store: Store, eid: str, est: float, **fields: float) -> None:
    now = int(time.time() * 1000)
    await store.redis.hset(f"hp:ep:{eid}:flow", mapping={
        "est": est, "eff_rate": est * KEEP, "win_ms": now - 5000, "win_n": 10, "win_r": 0,
        "last_start_ms": now - 100, "last_ok_ms": now - 100, "next_probe_ms": 0, **fields,
    })


async def test_a_probe_is_one_shorter_gap_and_a_refused_one_leaves_the_estimate(store: Store) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/hook", rate_limit_per_minute=6000)
    first, second = await claimed(store, eid, 2)
    now = int(time.time() * 1000)
    interval = 60000 / (600 * KEEP)
    tat = now + 150.0  # the next slot not yet booked: one interval after the last booked one
    await _settled(store, eid, 600, tat=tat)
    await store.pump.complete([succeeded(first, now - 50)])
    probing = await flow(store, eid)
    # The next slot comes an interval of the probe's pace (2 % above the estimate) after the last booked one.
    assert probing["probe_rate"] == pytest.approx(600 * 1.02)
    assert probing["tat"] == pytest.approx(tat - interval + 60000 / (600 * 1.02))
    assert probing["probe_ms"] == pytest.approx(probing["tat"])
    assert probing["eff_rate"] == pytest.approx(600 * KEEP)  # the pace itself does not change
    await store.pump.complete([overloaded(second, int(probing["probe_ms"]))])
    after = await flow(store, eid)
    assert after["est"] == pytest.approx(600) and after["w_max"] == pytest.approx(600 * 1.02)
    assert after["probe_ms"] == 0


async def test_a_probe_that_holds_raises_the_estimate_and_the_next_goes_further(store: Store) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/hook", rate_limit_per_minute=6000)
    first, second, *window = await claimed(store, eid, 18)
    now = int(time.time() * 1000)
    await _settled(store, eid, 600, tat=now + 150.0)
    await store.pump.complete([succeeded(first, now - 50)])
    probing = await flow(store, eid)
    await store.pump.complete([succeeded(second, int(probing["probe_ms"]))])
    after = await flow(store, eid)
    assert after["est"] == pytest.approx(600 * 1.02)
    assert after["eff_rate"] == pytest.approx(600 * 1.02 * KEEP)
    # The next probe goes further only once a window at the new pace has confirmed it (a burst
    # allowance takes one short gap whatever the rate).
    assert after["confirm"] == pytest.approx(600) and after["ramp"] == 1 and after["gain"] == pytest.approx(0.02)
    start = now - 3000  # (the window as if it had begun 3 s ago, so that it is old enough to close)
    await store.redis.hset(f"hp:ep:{eid}:flow", "win_ms", start)
    for i, d in enumerate(window):  # a clean window: 16 answers over more than a second
        await store.pump.complete([succeeded(d, start + 100 * i)])
    confirmed = await flow(store, eid)
    assert "confirm" not in confirmed and confirmed["ramp"] == 0
    assert confirmed["gain"] == pytest.approx(0.04) and confirmed["est"] == pytest.approx(600 * 1.02)


async def test_no_probe_without_a_backlog(store: Store) -> None:
    """An endpoint that had nothing to send has not shown that it takes more."""
    eid = await make_endpoint(store, "http://127.0.0.1:9/hook", rate_limit_per_minute=6000)
    (d,) = await claimed(store, eid, 1)
    now = int(time.time() * 1000)
    await _settled(store, eid, 600, tat=now + 150.0, last_start_ms=now - 60_000)
    await store.pump.complete([succeeded(d, now - 50)])
    assert (await flow(store, eid))["probe_ms"] == 0


async def test_a_cut_stays_within_the_floor(store: Store) -> None:
    eid = await make_endpoint(store, "http://127.0.0.1:9/hook", rate_limit_per_minute=600, min_rate_per_minute=500)
    deliveries = await claimed(store, eid, 10)
    t0 = int(time.time() * 1000) - 3000
    for i, d in enumerate(deliveries):  # 3 of 4 refused: what it accepts is 150/min, below the floor
        await store.pump.complete([succeeded(d, t0 + 100 * i) if i % 4 == 0 else overloaded(d, t0 + 100 * i)])
    assert (await flow(store, eid))["eff_rate"] == 500


# The law over minutes: the real scripts on a virtual clock against modelled receivers, no jitter.
# The loop before this one reached 0.90-0.92 behind the strict limiters, 0.75 through the drop and
# 0.06 on the receiver that refuses a third of its requests (the same model, the same figures).
LIMITED = [
    ("strict 5/s, configured 20/s", lambda: strict(5.0), 1200, 5.0),
    ("strict 20/s, configured 200/s", lambda: strict(20.0), 12000, 20.0),
    ("strict 2/s, configured 20/s", lambda: strict(2.0), 1200, 2.0),
    ("bucket 5/s with half a second of burst, configured 20/s", lambda: bucket(5.0), 1200, 5.0),
]


@pytest.mark.parametrize(("name", "receiver", "configured", "limit"), LIMITED, ids=[c[0] for c in LIMITED])
async def test_behind_a_limiter_the_pace_lands_on_what_it_accepts(
    store: Store, name: str, receiver: object, configured: int, limit: float
) -> None:
    run = await simulate(store, receiver(), configured_per_minute=configured, seconds=120,  # type: ignore[operator]
                         backlog=int(configured / 60 * 120 * 1.2))
    goodput = run.ok_between(30, 120) / (limit * 90)
    assert goodput >= 0.95, f"{name}: {goodput:.3f} of the limit"
    assert run.refused_share(30, 120) <= 0.03, f"{name}: {run.refused_share(30, 120):.1%} refused"
    if limit >= 5:  # converged within 15 s (at 2/s it takes the model 16-21 s: BENCHMARKS.md)
        assert run.ok_between(10, 15) >= 0.95 * limit * 5, name


async def test_refusals_that_are_not_about_load_do_not_cut_the_pace(store: Store) -> None:
    """A third refused whatever the rate (an unhealthy node behind a load balancer), configured 600/min
    with a backlog: the receiver would take 400/min; the loop before this one sent it 24/min."""
    run = await simulate(store, Flaky(1 / 3), configured_per_minute=600, seconds=120, backlog=1500)
    ok = run.ok_between(30, 120)
    assert ok >= 0.9 * (10 * 2 / 3) * 90, f"{ok} successes, {ok / 90:.2f}/s"


async def test_a_capacity_that_drops_and_comes_back_is_followed(store: Store) -> None:
    """A strict limit of 4/s drops to 1.33/s for 60 s and comes back, configured 10/s."""
    capacity = lambda t: 4 / 3 if 45 <= t < 105 else 4.0  # noqa: E731
    run = await simulate(store, strict(capacity), configured_per_minute=600, seconds=150, backlog=1500)
    possible = 15 * 4 + 60 * 4 / 3 + 45 * 4
    assert run.ok_between(30, 150) >= 0.85 * possible
    assert run.refused_share(30, 150) <= 0.09
    assert run.ok_between(110, 150) >= 0.9 * 4 * 40  # found again within seconds of coming back


@pytest.mark.slow
async def test_a_receiver_below_the_configured_rate_gets_close_to_its_capacity(
    store: Store, settings: Settings
) -> None:
    """Configured at 10/s, the receiver takes 4/s and answers 429 (no Retry-After) above that. Halving
    the rate and pausing the endpoint on each 429 delivered 0.13-0.26 of capacity (bench/adaptive.py);
    the loop must deliver most of it."""
    per_second, rate = 4.0, 600
    # The default whole-endpoint backoff (5 s), as in production: congestion must not wait it out.
    settings = dataclasses.replace(settings, backoff_base=5.0, backoff_cap=3600.0)
    receiver = await Receiver(capacity(per_second, burst=2)).start()
    try:
        started, stats = await drained(store, settings, receiver, receiver.url(), rate=rate, count=200, seconds=14)
        window = [status for at, status in receiver.answered if started + 4 <= at < started + 14]
        ok = window.count(200)
        # 10 s at 4/s is 40 (37 measured on a quiet box, 34 with both cores busy); the tolerance (28)
        # allows for scheduling jitter under load.
        assert ok >= 28, f"{ok} successes in 10 s from a receiver that takes 40 ({len(window)} answers)"
        # A 429 from a receiver that takes some is a pace to learn, not a reason to stop: no whole-endpoint
        # pause (halve-and-pause waited 2.5-5 s after each; the loop holds one pacing interval).
        arrivals = [r.at for r in receiver.received if started + 4 <= r.at < started + 14]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert max(gaps) < 1.5, f"a {max(gaps):.2f} s gap between requests: the endpoint was paused"
        assert max_in_window([r.at for r in receiver.received]) <= math.ceil(rate / 60) + 1 + 1  # +1: jitter
        pacing = stats["pacing"]
        assert pacing["state"] == "probing"
        assert pacing["last_failed_rate_per_minute"] is not None
        assert per_second * 60 * 0.7 <= pacing["last_failed_rate_per_minute"] <= rate
        # What it accepts, as measured: about its 4/s (its burst allowance can carry it a little over).
        assert per_second * 60 * 0.7 <= pacing["accepted_rate_per_minute"] <= per_second * 60 * 1.5, pacing
        assert stats["effective_rate_per_minute"] < rate
    finally:
        await receiver.stop()


@pytest.mark.slow
async def test_a_receiver_that_takes_nothing_gets_backoff_and_then_its_pace_back(
    store: Store, settings: Settings
) -> None:
    """503 to everything for 2.5 s, then all taken: the endpoint backs off as a whole while nothing gets
    through, and afterwards drains at the configured rate at once (an outage teaches no pace), without
    a burst. Halve-and-pause came back at a few requests a second and climbed slowly."""
    rate = 600  # 10/s
    outage = {"until": math.inf}

    def script(_n: int, _request: object) -> Reply:
        return Reply(503) if time.time() < outage["until"] else Reply()

    receiver = await Receiver(script).start()  # type: ignore[arg-type]
    try:
        eid = await make_endpoint(store, receiver.url(), rate_limit_per_minute=rate, max_in_flight=10)
        await send(store, 120, endpoint_ids=[eid])
        async with running_worker(settings):
            await receiver.wait_for(1, timeout=10)
            outage["until"] = receiver.received[0].at + 2.5
            await asyncio.sleep(max(0.0, outage["until"] + 3.5 - time.time()))
        pauses = [json.loads(p) for p in await store.redis.lrange(f"hp:ep:{eid}:pauses", 0, -1)]
        assert any(p["reason"] == "backoff" for p in pauses), pauses
        ok = [at for at, status in receiver.answered if status == 200]
        assert ok, "nothing was delivered after the outage"
        # From half a second after the first success, 2.5 s at the configured 10/s is 25 requests; the
        # tolerance (18) allows for jitter, and is far above what a slow restart would send.
        recovered = [at for at in ok if ok[0] + 0.5 <= at < ok[0] + 3.0]
        assert len(recovered) >= 18, f"{len(recovered)} requests in 2.5 s after the outage ended"
        assert max_in_window([r.at for r in receiver.received]) <= math.ceil(rate / 60) + 1 + 1  # +1: jitter
        after = await flow(store, eid)
        assert after["eff_rate"] == pytest.approx(rate)
        assert "w_max" not in after  # nothing learnt from an outage
    finally:
        await receiver.stop()


@pytest.mark.slow
async def test_behind_nginx_limit_req_with_no_burst_a_real_worker_gets_the_limit(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """Debian's nginx, `limit_req` at 5 r/s with no burst (its default), in front of a receiver; the
    endpoint configured at 20/s. Counted from nginx's own access log. The loop before this one got 0.81
    of the limit here (bench/adaptive.py): sends out of step by a few milliseconds were refused, and
    each refusal cut the pace by a fifth."""
    require_nginx()
    receiver = await Receiver().start()
    nginx = Nginx(tmp_path).start(receiver.port, {"hook": Limit(5.0)})
    try:
        started, _stats = await drained(store, settings, receiver, nginx.url("hook"), rate=1200, count=400, seconds=30)
        answers = [(at, status) for at, status in nginx.answers()["hook"] if started + 15 <= at < started + 30]
    finally:
        nginx.stop()
        await receiver.stop()
    ok = sum(1 for _at, status in answers if status == 200)
    refused = sum(1 for _at, status in answers if status == 503)
    # 15 s at 5/s is 75. Measured: 70-72 on a quiet box; the tolerance (66, 0.88) allows for scheduling
    # jitter under load and stays above what the loop before took (61).
    assert ok >= 66, f"{ok} of 75 taken in 15 s ({refused} refused)"
    assert refused <= 0.05 * len(answers), f"{refused} of {len(answers)} refused"


@pytest.mark.slow
async def test_a_real_worker_keeps_the_pace_for_a_receiver_that_refuses_a_third_whatever_the_rate(
    store: Store, settings: Settings
) -> None:
    """503 to a third of requests whatever the rate (an unhealthy node behind a load balancer), endpoint
    at 600/min: the receiver would take 400/min. The loop before this one cut it to 24/min."""
    chance = random.Random(7)

    def script(_n: int, _request: object) -> Reply:
        return Reply(503) if chance.random() < 1 / 3 else Reply()

    receiver = await Receiver(script).start()  # type: ignore[arg-type]
    try:
        started, stats = await drained(store, settings, receiver, receiver.url(), rate=600, count=400, seconds=25)
        ok = sum(1 for at, status in receiver.answered if status == 200 and started + 10 <= at < started + 25)
        # 15 s at 400/min is 100 (measured 90-100 on a quiet box); the tolerance (60) allows for a late
        # verdict under load and is far above what a cut pace gets (6 at 24/min).
        assert ok >= 60, f"{ok} successes in 15 s from a receiver that takes 100"
        assert 0.15 <= stats["pacing"]["refused_whatever_the_rate"] <= 0.6, stats["pacing"]
    finally:
        await receiver.stop()
