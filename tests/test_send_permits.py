"""Send permits for fast endpoints (permit.lua through scheduler/permits.py), on a real Redis: a
batch is counted against each endpoint's last second, and concurrent sends share script calls."""

from __future__ import annotations

import asyncio

from core.store import Store
from scheduler.permits import PermitBatcher


async def test_one_batch_grants_up_to_the_bound_and_names_when_the_rest_may_ask(store: Store) -> None:
    answers = await store.pump.send_permits([("ep_a", f"d{i}.1", 5) for i in range(8)])

    granted = [ms for ok, ms in answers if ok]
    refused = [ms for ok, ms in answers if not ok]
    assert len(granted) == 5 and len(refused) == 3
    assert [ok for ok, _ in answers] == [True] * 5 + [False] * 3  # in the order the sends asked
    assert all(ms == granted[0] + 1000 for ms in refused)  # when the oldest of the window leaves it
    assert await store.redis.zcard("hp:ep:ep_a:permits") == 5
    assert 0 < await store.redis.pttl("hp:ep:ep_a:permits") <= 2000


async def test_endpoints_in_one_batch_are_counted_apart_and_across_calls(store: Store) -> None:
    first = await store.pump.send_permits([("ep_a", "a1.1", 2), ("ep_b", "b1.1", 2), ("ep_a", "a2.1", 2)])
    assert [ok for ok, _ in first] == [True, True, True]

    second = await store.pump.send_permits([("ep_a", "a3.1", 2), ("ep_b", "b2.1", 2)])
    assert [ok for ok, _ in second] == [False, True]  # ep_a's second is full, ep_b has a place left
    assert second[0][1] == first[0][1] + 1000


async def test_concurrent_sends_share_script_calls_and_keep_the_bound(store: Store) -> None:
    calls = 0
    ask = store.pump.send_permits

    async def counted(requests: list[tuple[str, str, int]]) -> list[tuple[bool, int]]:
        nonlocal calls
        calls += 1
        return await ask(requests)

    store.pump.send_permits = counted  # type: ignore[method-assign]
    batcher = PermitBatcher(store)
    try:
        answers = await asyncio.gather(*(batcher.take("ep_c", f"c{i}.1", 30) for i in range(100)))
    finally:
        await batcher.close()

    assert sum(ok for ok, _ in answers) == 30
    assert calls < 10  # 100 sends asked together: a few batches, not one call each
