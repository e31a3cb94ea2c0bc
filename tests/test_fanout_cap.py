"""Bounded work per request: the deliveries one request would create (messages x the endpoints each goes
to) are counted before anything is written, and a request over HOOKPUMP_MAX_DELIVERIES_PER_REQUEST is
refused with 413 naming the cap, changing nothing."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from core.store import NewMessage, Store
from tests.api import ADMIN, api_client, assert_problem, snapshot
from tests.pumping import make_endpoint


def message(event_type: str, endpoint_ids: list[str] | None = None) -> dict[str, Any]:
    return {"event_type": event_type, "payload": {}, **({"endpoint_ids": endpoint_ids} if endpoint_ids else {})}


async def test_a_request_over_the_delivery_cap_is_refused_before_anything_is_written(
    settings: Settings, store: Store
) -> None:
    every = [await make_endpoint(store, "https://receiver.test/hook") for _ in range(3)]
    async with api_client(settings.replace(max_deliveries_per_request=5)) as client:
        before = await snapshot(store)
        for path, body in (
            ("/v1/messages/batch", {"messages": [message("order.paid"), message("order.paid")]}),  # 2 x 3
            ("/v1/messages/batch", {"messages": [message("a", every), message("b", every)]}),  # 2 x 3 listed
        ):
            problem = assert_problem(await client.post(path, json=body, headers=ADMIN), 413)
            assert "6 deliveries" in problem["detail"] and "the limit is 5" in problem["detail"]
            assert "HOOKPUMP_MAX_DELIVERIES_PER_REQUEST" in problem["detail"]
        assert await snapshot(store) == before
        # Up to the cap is fine, and the cap counts deliveries, not messages.
        fits = await client.post("/v1/messages/batch", headers=ADMIN,
                                 json={"messages": [message("order.paid"), message("b", every[:2])]})
        assert fits.status_code == 202, fits.text

    async with api_client(settings.replace(max_deliveries_per_request=2)) as client:
        one = await client.post("/v1/messages", json=message("order.paid"), headers=ADMIN)
        assert "3 deliveries" in assert_problem(one, 413)["detail"]


async def test_the_count_is_what_ingest_creates(settings: Settings, store: Store) -> None:
    """The Python count mirrors ingest.lua's fan-out: filtered, unfiltered, disabled and listed endpoints."""
    unfiltered = await make_endpoint(store, "https://receiver.test/all")
    paid_only = await make_endpoint(store, "https://receiver.test/paid", event_types=["order.paid"])
    await make_endpoint(store, "https://receiver.test/off", enabled=False)
    await make_endpoint(store, "https://receiver.test/other", event_types=["order.refunded"])
    shapes = [
        [NewMessage("order.paid", "{}", None)],
        [NewMessage("order.refunded", "{}", None), NewMessage("nobody.cares", "{}", None)],
        [NewMessage("order.paid", "{}", None)] * 7 + [NewMessage("x", "{}", [paid_only, unfiltered])],
    ]
    for messages in shapes:
        counted = await store.messages.fanout(messages)
        accepted = await store.messages.ingest(messages)
        assert counted == sum(len(m["deliveries"]) for m in accepted.messages)


async def test_messages_that_go_nowhere_do_not_count(settings: Settings, store: Store) -> None:
    # Messages that go nowhere create no deliveries, so a full batch of them is fine under any cap.
    async with api_client(settings.replace(max_deliveries_per_request=1)) as client:
        answer = await client.post("/v1/messages/batch", headers=ADMIN, json={"messages": [message("x")] * 50})
        assert answer.status_code == 202, answer.text
