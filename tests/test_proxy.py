"""Behind a proxy: the client address and the scheme come from X-Forwarded-For / X-Forwarded-Proto only
when the peer is in HOOKPUMP_TRUSTED_PROXIES, and the console cookie is Secure whenever the public
scheme is https. Through `hookpump serve`'s own uvicorn server, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ConfigError
from core.settings import Settings
from core.store import Store
from service.guessing import GUESS_LIMIT
from tests.api import ADMIN_KEY, bearer, serving

WRONG = bearer("hp_wrong-key-wrong-key-wrong-key-wrong")


def via(address: str, scheme: str = "http") -> dict[str, str]:
    """What a proxy adds in front of a client at `address` that reached it over `scheme`."""
    return {"X-Forwarded-For": address, "X-Forwarded-Proto": scheme}


def sign_in_cookie(url: str, headers: dict[str, str]) -> str:
    answer = httpx.post(f"{url}/ui/login", data={"key": ADMIN_KEY},
                        headers={"Origin": url, **headers}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return answer.headers["set-cookie"]


def statuses_after_a_flood(url: str, flood_from: str, then_from: str) -> tuple[int, int]:
    """Wrong keys up to the limit "from" one address, then one more from it and one from another."""
    with httpx.Client(base_url=url) as client:
        for _ in range(GUESS_LIMIT):
            assert client.get("/v1/queue", headers={**WRONG, **via(flood_from)}).status_code == 401
        same = client.get("/v1/queue", headers={**WRONG, **via(flood_from)}).status_code
        other = client.get("/v1/queue", headers={**WRONG, **via(then_from)}).status_code
    return same, other


async def test_a_trusted_proxy_supplies_the_client_address_and_the_scheme(settings: Settings, store: Store) -> None:
    with serving(settings.replace(trusted_proxies=("127.0.0.1", "::1"))) as url:
        assert statuses_after_a_flood(url, "203.0.113.9", "203.0.113.10") == (429, 401)
        cookie = sign_in_cookie(url, via("203.0.113.11", "https"))
    assert "secure" in cookie.lower()


async def test_forwarded_headers_from_anyone_else_are_ignored(settings: Settings, store: Store) -> None:
    # Trusting a network the test client is not in is the same as trusting nobody, the default.
    for proxies in ((), ("10.0.0.0/8",)):
        await store.flush_all_for_tests()
        with serving(settings.replace(trusted_proxies=proxies)) as url:
            cookie = sign_in_cookie(url, via("203.0.113.11", "https"))
            # Every request counts against the real peer, 127.0.0.1, whatever it claims.
            assert statuses_after_a_flood(url, "203.0.113.9", "203.0.113.10") == (429, 429)
        assert "secure" not in cookie.lower()


async def test_an_https_public_url_makes_the_cookie_secure(settings: Settings, store: Store) -> None:
    with serving(settings.replace(public_url="https://hooks.example.com")) as url:
        assert "secure" in sign_in_cookie(url, {}).lower()


@pytest.mark.parametrize(("raw", "parsed"), [
    ("10.0.0.1", ("10.0.0.1",)), ("10.0.0.0/8, 2001:db8::/32", ("10.0.0.0/8", "2001:db8::/32")), ("*", ("*",)),
])  # fmt: skip
def test_trusted_proxies_are_addresses_or_networks(raw: str, parsed: tuple[str, ...]) -> None:
    assert Settings.from_env({"HOOKPUMP_TRUSTED_PROXIES": raw}).trusted_proxies == parsed


@pytest.mark.parametrize(("variable", "raw"), [("HOOKPUMP_TRUSTED_PROXIES", "proxy.internal"),
                                               ("HOOKPUMP_PUBLIC_URL", "hooks.example.com")])
def test_bad_proxy_settings_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})
