"""Which network targets delivery may reach: URL checks and the address classes refused when private
targets are off (loopback, private, link-local, cloud metadata, CGNAT, ...). Pure except `check_host`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from core.errors import ForbiddenTarget, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
# getaddrinfo can hang on a broken resolver; endpoint creation should not.
RESOLVE_TIMEOUT = 5.0

# Metadata services hand out cloud credentials, so they get their own, louder reason. 168.63.129.16 is
# Azure's platform endpoint: a public-looking address that is only reachable from inside Azure.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "168.63.129.16"))
PRIVATE_V4 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
PRIVATE_V6 = (ipaddress.IPv6Network("fc00::/7"),)
CARRIER_GRADE_NAT = ipaddress.IPv4Network("100.64.0.0/10")
# RFC 6052 well-known NAT64 prefix: the low 32 bits are an IPv4 address the gateway will connect to.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _address_class(ip: IPAddress) -> str | None:
    """The class of a refused address ("a loopback address"), or None for a public one."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in network for network in PRIVATE_V4):
            return "a private address"
        if ip in CARRIER_GRADE_NAT:
            return "a carrier-grade NAT address"
    elif any(ip in network for network in PRIVATE_V6):
        return "a private address"
    elif ip.is_site_local:  # fec0::/10: deprecated (RFC 3879), yet still routed inside some networks
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    # Documentation, benchmarking, discard and other special-purpose ranges: nobody's webhook lives there.
    if not ip.is_global:
        return "a special-purpose address that is not globally routable"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), which is where it really goes."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why delivery may not reach `ip` when private targets are off ("127.0.0.1 is a loopback address"),
    or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            embedded_class = _address_class(embedded)
            if embedded_class is not None:
                return f"{ip} is an IPv6 form of {embedded}, {embedded_class}"
            if ip.ipv4_mapped is not None or ip in NAT64:
                # ipaddress calls all of ::ffff:0:0/96 non-global and 64:ff9b::/96 reserved, but both
                # just carry the IPv4 address (DNS64 hands out the latter for every IPv4-only host).
                return None
    address_class = _address_class(ip)
    return None if address_class is None else f"{ip} is {address_class}"


def parse_ip(host: str) -> IPAddress | None:
    """`host` as an IP address if it is a literal one (brackets and an IPv6 zone allowed, and every IPv4
    form inet_aton reads: `2130706433`, `0177.0.0.1`, `127.1`, `0x7f.1`), else None. The guard reads
    these forms itself: a resolver or HTTP client that reads one as an address must not reach what the
    guard took for a name."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return parse_legacy_ipv4(host)


def parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address inet_aton(3) reads `host` as: one to four parts, each decimal, octal (a leading
    0) or hexadecimal (0x), the last one filling the bytes the others leave; None if it is not one."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        lowered = part.lower()
        if lowered.startswith("0x"):
            digits, base = lowered[2:] or "0", 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not digits.isascii() or not digits.isalnum():
            return None
        try:
            values.append(int(digits, base))
        except ValueError:
            return None
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def validate_url(url: str) -> str:
    """Return `url` unchanged if it is an acceptable endpoint URL, else raise InvalidInput("url", ...)."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("url", "must be a non-empty string")
    try:
        url.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON "\ud800" escape
        raise InvalidInput("url", "is not valid Unicode text") from exc
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput("url", f"is longer than {MAX_URL_LENGTH} characters")
    # CR/LF would split the request line; other whitespace and control characters have no place in a URL.
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise InvalidInput("url", "must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput("url", f"is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("url", "scheme must be http or https")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs and attempt records; use endpoint headers instead.
        raise InvalidInput("url", "must not contain credentials (user:password@); use endpoint headers")
    host = parts.hostname
    if not host:
        raise InvalidInput("url", "has no host")
    if port == 0:
        raise InvalidInput("url", "port must be between 1 and 65535")
    if parse_ip(host) is None:
        try:
            host.encode("idna")
        except UnicodeError as exc:
            raise InvalidInput("url", f"host {host!r} is not a valid domain name") from exc
    return url


def url_target(url: str) -> tuple[str, int]:
    """The (host, port) a validated URL connects to, for `check_host`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, parts.port or (443 if parts.scheme.lower() == "https" else 80)


async def check_host(host: str, port: int, allow_private: bool) -> None:
    """Raise ForbiddenTarget if `host` is, or resolves to, any refused address; InvalidInput if it does
    not resolve. With `allow_private` nothing is refused, so nothing is resolved (dev and tests may
    name hosts that do not exist yet). The client repeats the check at connect time, so a name that
    later resolves elsewhere is still refused."""
    if allow_private:
        return
    literal = parse_ip(host)
    if literal is not None:
        reason = forbidden_reason(literal)
        if reason is not None:
            raise ForbiddenTarget("url", f"{reason}; delivery to private targets is off")
        return
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise InvalidInput("url", f"{host} did not resolve within {RESOLVE_TIMEOUT:g} s") from exc
    except (OSError, UnicodeError) as exc:
        raise InvalidInput("url", f"{host} does not resolve") from exc
    for _family, _type, _proto, _canonname, sockaddr in infos:
        ip = parse_ip(str(sockaddr[0]))
        reason = forbidden_reason(ip) if ip is not None else f"{sockaddr[0]} is not an IP address"
        if reason is not None:
            raise ForbiddenTarget(
                "url", f"{host} resolves to a refused address: {reason}; delivery to private targets is off"
            )
