"""Which addresses and URLs delivery refuses when private targets are off."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from core.addresses import check_host, forbidden_reason, parse_ip, url_target, validate_url
from core.errors import ForbiddenTarget, InvalidInput


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "site-local"),
        ("feff:ffff::1", "site-local"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("192.0.2.10", "not globally routable"),  # documentation range
        ("198.18.0.1", "not globally routable"),  # benchmarking
        ("2001:db8::1", "not globally routable"),
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1, a loopback"),
        ("::ffff:10.1.2.3", "IPv6 form of 10.1.2.3, a private"),
        ("::ffff:169.254.169.254", "IPv6 form of 169.254.169.254, a cloud metadata"),
        ("::ffff:100.64.0.1", "carrier-grade NAT"),
        ("2002:7f00:1::", "IPv6 form of 127.0.0.1"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "IPv6 form of 169.254.169.254"),  # NAT64
    ],
)
def test_refused_addresses(address: str, reason: str) -> None:
    message = forbidden_reason(ipaddress.ip_address(address))
    assert message is not None and reason in message
    assert message.startswith(str(ipaddress.ip_address(address)))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "http://example.com:8080/a/b?c=d&e=f",
        "HTTPS://EXAMPLE.COM/",
        "https://[2606:4700::1]/hook",
        "http://127.0.0.1:9000/",  # syntax only: the address check is check_host's
        "https://bücher.example/hook",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_valid_urls_pass_unchanged(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "non-empty"),
        ("ftp://example.com/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("example.com/hook", "http or https"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://token@example.com/", "credentials"),
        ("https:///path", "no host"),
        ("https://:443/", "no host"),
        ("https://example.com/a\r\nX-Injected: 1", "whitespace"),
        ("https://example.com/\n", "whitespace"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\ttab", "whitespace"),
        ("https://example.com/\x00", "control"),
        ("https://example.com/" + "a" * 2030, "longer than 2048"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:0/", "port"),
        ("https://[::1/", "not a valid URL"),
        ("https://example.com/\ud800", "not valid Unicode"),
    ],
)
def test_invalid_urls_are_rejected(url: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_url(url)
    assert caught.value.field == "url"
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://example.com/x", ("example.com", 443)),
        ("http://example.com/x", ("example.com", 80)),
        ("http://example.com:8080", ("example.com", 8080)),
        ("https://[::1]:8443/", ("::1", 8443)),
    ],
)
def test_url_target(url: str, target: tuple[str, int]) -> None:
    assert url_target(url) == target


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "::ffff:127.0.0.1", "169.254.169.254", "localhost", "127.1"])
async def test_check_host_refuses_private_targets(host: str) -> None:
    with pytest.raises(ForbiddenTarget) as caught:
        await check_host(host, 80, allow_private=False)
    assert caught.value.field == "url"


async def test_check_host_allows_private_targets_when_enabled() -> None:
    await check_host("localhost", 80, allow_private=True)
    await check_host("does-not-exist.invalid", 80, allow_private=True)


async def test_check_host_allows_public_literal_address() -> None:
    await check_host("8.8.8.8", 443, allow_private=False)  # no resolution needed


async def test_check_host_reports_unresolvable_name() -> None:
    with pytest.raises(InvalidInput) as caught:
        await check_host("does-not-exist.invalid", 443, allow_private=False)
    assert not isinstance(caught.value, ForbiddenTarget)
    assert "does not resolve" in caught.value.problem


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),  # one 32-bit number
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("127.1", "127.0.0.1"),  # the last part fills the missing bytes
        ("0x7f.1", "127.0.0.1"),  # hexadecimal
        ("0x7F000001", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("10.0x10203", "10.1.2.3"),
        ("012.1.2.3", "10.1.2.3"),
        ("0", "0.0.0.0"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_the_guard_reads_every_numeric_ipv4_form_itself(host: str, address: str) -> None:
    assert parse_ip(host) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize("host", ["example.com", "08.1.2.3", "256.1", "1.16777216", "1.2.3.4.5", "1..2", "0x1g",
                                  "1.2.3.", "-1", "+1", "٣.1"])
def test_names_and_malformed_numbers_are_not_addresses(host: str) -> None:
    assert parse_ip(host) is None


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "127.1", "0x7f.1", "fec0::1", "[fec0::1]", "feff::1"])
async def test_check_host_refuses_numeric_forms_and_site_local_without_resolving(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_resolver(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the guard asked the resolver about a literal address")

    monkeypatch.setattr(asyncio.AbstractEventLoop, "getaddrinfo", no_resolver)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_resolver)
    with pytest.raises(ForbiddenTarget, match=r"loopback|site-local"):
        await check_host(host, 80, allow_private=False)
