"""Key guessing is bounded per client address on the JSON API and the console's sign-in alike: wrong
keys counted atomically, 429 problem+json with Retry-After past the limit, IPv6 counted per /64, one
address's flood holding back no other address; and a bootstrap key too short to be safe refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from core.errors import ConfigError
from core.settings import Settings
from core.store import Store
from service.app import create_app
from service.guessing import GUESS_LIMIT, GUESS_WINDOW_SECONDS, client_bucket
from tests.api import ADMIN, assert_problem, bearer
from tests.console import SAME_ORIGIN

WRONG = bearer("hp_wrong-key-wrong-key-wrong-key-wrong")
Clients = Callable[[str], httpx.AsyncClient]


@contextlib.asynccontextmanager
async def clients_at(settings: Settings) -> AsyncIterator[Clients]:
    """One app; a client for any client address (what uvicorn reports as the peer)."""
    app = create_app(settings)
    opened: dict[str, httpx.AsyncClient] = {}
    async with app.router.lifespan_context(app):
        def at(address: str) -> httpx.AsyncClient:
            if address not in opened:
                transport = httpx.ASGITransport(app=app, client=(address, 40000))
                opened[address] = httpx.AsyncClient(transport=transport, base_url="http://hookpump.test")
            return opened[address]

        try:
            yield at
        finally:
            for client in opened.values():
                await client.aclose()


@pytest.mark.parametrize(("host", "bucket"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("testclient", "testclient"),
    (None, "unknown"),
])  # fmt: skip
def test_a_client_is_counted_by_its_address_and_an_ipv6_one_by_its_64(host: str | None, bucket: str) -> None:
    assert client_bucket(host) == bucket


async def test_wrong_keys_past_the_limit_are_answered_429_and_other_addresses_are_not(
    settings: Settings, store: Store
) -> None:
    async with clients_at(settings) as at:
        guesser = at("203.0.113.7")
        for _ in range(GUESS_LIMIT):
            assert_problem(await guesser.get("/v1/endpoints", headers=WRONG), 401)
        # Past the limit even the right key is refused: a guess is not judged, whatever it is.
        refused = assert_problem(await guesser.get("/v1/endpoints", headers=ADMIN), 429)
        retry_after = int((await guesser.get("/v1/endpoints", headers=WRONG)).headers["retry-after"])
        assert 0 < retry_after <= GUESS_WINDOW_SECONDS and "Retry-After" in refused["detail"]
        # Another address, a valid key or a wrong one, is answered as if nothing had happened.
        assert (await at("203.0.113.8").get("/v1/endpoints", headers=ADMIN)).status_code == 200
        assert_problem(await at("203.0.113.8").get("/v1/endpoints", headers=WRONG), 401)


async def test_an_ipv6_client_is_limited_by_its_64(settings: Settings, store: Store) -> None:
    async with clients_at(settings) as at:
        for n in range(GUESS_LIMIT):
            assert_problem(await at(f"2001:db8:1:2::{n + 1:x}").get("/v1/queue", headers=WRONG), 401)
        assert_problem(await at("2001:db8:1:2:ffff::9").get("/v1/queue", headers=WRONG), 429)
        assert_problem(await at("2001:db8:1:3::1").get("/v1/queue", headers=WRONG), 401)


async def test_concurrent_guesses_are_counted_atomically(settings: Settings, store: Store) -> None:
    """Thirty wrong keys at once: exactly the limit of them are judged (a check read before the count
    was written would let all thirty through)."""
    async with clients_at(settings) as at:
        guesser = at("198.51.100.1")
        answers = await asyncio.gather(*(guesser.get("/v1/queue", headers=WRONG) for _ in range(30)))
        assert sorted(a.status_code for a in answers) == [401] * GUESS_LIMIT + [429] * (30 - GUESS_LIMIT)


async def test_valid_keys_do_not_use_up_the_limit(settings: Settings, store: Store) -> None:
    async with clients_at(settings) as at:
        client = at("198.51.100.2")
        keys = []
        for n in range(GUESS_LIMIT + 2):
            created = await client.post("/v1/api-keys", headers=ADMIN, json={"name": f"k{n}", "scopes": ["read"]})
            keys.append(created.json()["key"])
        for key in keys:  # each new to the key cache, so each is counted, and each is forgiven
            assert (await client.get("/v1/queue", headers=bearer(key))).status_code == 200
        assert_problem(await client.get("/v1/queue", headers=WRONG), 401)


async def test_a_flood_of_bad_sign_ins_does_not_lock_out_operators_elsewhere(settings: Settings, store: Store) -> None:
    async with clients_at(settings) as at:
        flood = at("192.0.2.66")
        for _ in range(GUESS_LIMIT):
            answer = await flood.post("/ui/login", data={"key": "wrong"}, headers=SAME_ORIGIN)
            assert answer.status_code == 401
        refused = await flood.post("/ui/login", data={"key": settings.api_key}, headers=SAME_ORIGIN)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "set-cookie" not in refused.headers
        operator = await at("192.0.2.10").post("/ui/login", data={"key": settings.api_key}, headers=SAME_ORIGIN)
        assert operator.status_code == 303 and "hookpump_console=" in operator.headers["set-cookie"]
        # The console and the JSON API share one count per address.
        assert_problem(await flood.get("/v1/queue", headers=ADMIN), 429)


@pytest.mark.parametrize("key", ["", "x" * 31])
def test_a_bootstrap_key_shorter_than_32_characters_refuses_to_start(key: str) -> None:
    if not key:  # empty means unset, which is allowed (keys then come from `hookpump api-key create`)
        assert Settings.from_env({"HOOKPUMP_API_KEY": key}).api_key is None
        return
    with pytest.raises(ConfigError, match="HOOKPUMP_API_KEY") as refused:
        Settings.from_env({"HOOKPUMP_API_KEY": key})
    assert "32" in str(refused.value)
    assert Settings.from_env({"HOOKPUMP_API_KEY": "x" * 32}).api_key == "x" * 32
