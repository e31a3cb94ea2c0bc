"""The HTTP client of delivery; the one module that imports httpx and aiohttp.

Connections are one aiohttp pool; `send` calls aiohttp directly and `http`/`send_httpx` offer httpx over
the same pool and SSRF guard. Measured with bench/client_bench.py (5,000 POSTs per client, concurrency 50,
median of 3 rounds, receiver pinned to the other core; 2-vCPU AMD EPYC VM shared with other work, about
4x slower than the one in notes/performance.md, so compare ratios; CPU per request is the steady figure):

    client                                   req/s   p50 ms  p99 ms  client CPU/req
    httpx.AsyncClient, its own pool            201    197    1,106      4,592 us
    httpx API over this module's transport   1,140     41      107        832 us
    DeliveryClient.send (aiohttp directly)   3,097     16       46        305 us
    plain aiohttp                            2,366     18       65        322 us

The httpx layer alone costs ~2.7x the CPU of the whole aiohttp request, so `send` skips it; it matches
plain aiohttp. Signing, headers and the attempt record add ~60 us (attempt_delivery: 366 us).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from core.addresses import forbidden_reason, parse_ip

logger = logging.getLogger(__name__)

# The response headers kept in attempt records (lower-case); the rest is noise or personal data.
RESPONSE_HEADERS = ("retry-after", "content-type", "content-length", "date", "location", "x-request-id", "server")
DEFAULT_USER_AGENT = "hookpump/0.1 (+https://github.com/hookpump)"
MAX_CONNECTIONS = 1000
# No cap per host: how many requests an endpoint gets at once is the scheduler's max_in_flight (up to
# 1000), and several endpoints may share a host. A lower cap here would queue requests inside aiohttp,
# where the wait counts against request_timeout and looks like the receiver's slowness.
MAX_CONNECTIONS_PER_HOST = 0
KEEPALIVE_SECONDS = 30.0
# Resolved addresses are reused this long; they are cached after filtering, so the cache never holds
# a refused address.
DNS_CACHE_SECONDS = 10
MAX_ERROR_MESSAGE = 200

ERROR_KINDS = frozenset({"timeout", "connect", "dns", "forbidden_address", "reset", "protocol", "other"})


@dataclass(frozen=True, slots=True)
class HttpResult:
    """One request's outcome. `status` is None when no answer came (then `error_kind` says why); an
    answer whose body then failed has both a status and an error."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)  # RESPONSE_HEADERS that were present
    body_excerpt: str = ""  # at most response_body_limit bytes, decoded as UTF-8 with replacement
    body_truncated: bool = False
    duration_ms: float = 0.0
    error_kind: str | None = None  # one of ERROR_KINDS
    error_message: str | None = None


class ResolutionError(httpx.ConnectError):
    """The host name does not resolve."""


class ForbiddenAddressError(httpx.ConnectError):
    """The host is, or resolves only to, addresses delivery may not reach."""


class _RefusedAddress(OSError):
    # An OSError so that aiohttp's connector carries it out as ClientConnectorDNSError.os_error.
    pass


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's ThreadedResolver, then (private targets off) drops refused addresses and
    fails if none remain: the check happens at connect time, so DNS that changes after an endpoint was
    accepted cannot point delivery at 127.0.0.1 or a metadata service."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        checked = [(result, _refusal(result["host"])) for result in results]
        allowed = [result for result, reason in checked if reason is None]
        if not allowed:
            reasons = "; ".join(sorted({reason for _, reason in checked if reason is not None}))
            raise _RefusedAddress(f"{host} resolves only to refused addresses: {_short(reasons)}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _refusal(address: str) -> str | None:
    ip = parse_ip(address)
    return forbidden_reason(ip) if ip is not None else f"{address} is not an IP address"


@functools.lru_cache(maxsize=8192)
def _target(url: str) -> tuple[URL, str | None]:
    """The parsed URL, and why its host is refused if it is a literal IP (aiohttp connects to those
    without asking the resolver). Endpoints send to the same few URLs over and over: parse each once."""
    parsed = URL(url)
    host = parsed.raw_host or ""
    return parsed, _refusal(host) if parse_ip(host) is not None else None


def _short(exc: BaseException | str) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 1] + "…"


def translate(exc: BaseException) -> httpx.HTTPError:
    """The httpx exception for an aiohttp or socket failure: httpx's types are what this module speaks."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        cause = exc.os_error
        if isinstance(cause, _RefusedAddress):
            return ForbiddenAddressError(str(cause))
        return ResolutionError(f"{exc.host} does not resolve ({cause.strerror or cause})")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout("timed out while connecting")
    if isinstance(exc, TimeoutError):  # aiohttp's total and socket-read timeouts, asyncio.timeout
        return httpx.ReadTimeout("timed out waiting for the response")
    if isinstance(exc, aiohttp.ClientSSLError):
        return httpx.ConnectError(f"TLS failed: {_short(exc.os_error)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        # errno first: asyncio puts "Connect call failed ('127.0.0.1', 1)" in strerror.
        cause = exc.os_error
        reason = os.strerror(cause.errno) if cause.errno else _short(cause)
        return httpx.ConnectError(f"cannot connect to {exc.host}:{exc.port}: {reason}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.ReadError("the connection was closed before a complete response")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return httpx.ReadError(f"the connection was reset ({_short(exc)})")
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return httpx.ReadError(f"the connection was reset ({_short(exc)})")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError("the response body ended early or was malformed")
    if isinstance(exc, aiohttp.ClientResponseError):
        first_line = exc.message.splitlines()[0].rstrip(":") if exc.message else ""
        return httpx.RemoteProtocolError(f"malformed response: {_short(first_line or exc)}")
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(f"unusable URL: {_short(exc)}")
    return httpx.TransportError(_short(exc))


def error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, ForbiddenAddressError):
        return "forbidden_address"
    if isinstance(exc, ResolutionError):
        return "dns"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "reset"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return "protocol"
    return "other"


class _AiohttpStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            raise translate(exc) from exc

    async def aclose(self) -> None:
        # Releasing an unfinished body closes that connection instead of returning it to the pool.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over a shared aiohttp session. The session is not the transport's: the
    DeliveryClient that owns both closes it. Literal-IP hosts are checked here; names in the resolver."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession], *, allow_private: bool) -> None:
        self._session = session
        self._allow_private = allow_private

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url, refused = _target(str(request.url))
        if refused is not None and not self._allow_private:
            raise ForbiddenAddressError(refused, request=request)
        timeouts = request.extensions.get("timeout", {})
        try:
            response = await self._session().request(
                request.method,
                url,
                data=await request.aread() or None,
                headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw],
                allow_redirects=False,
                # httpx decodes Content-Encoding itself; decoding here too would corrupt the body.
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
                ),
            )
        except Exception as exc:
            translated = translate(exc)
            translated.request = request
            raise translated from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        pass


class DeliveryClient:
    """Sends webhook requests over one pooled aiohttp session. Never follows redirects, never raises
    for a transport problem (see HttpResult), refuses private targets at connect time unless allowed.
    Create it inside the event loop that will use it; close it with `aclose()` or `async with`."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        request_timeout: float,
        allow_private_targets: bool,
        response_body_limit: int,
        user_agent: str = DEFAULT_USER_AGENT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.allow_private_targets = allow_private_targets
        self.response_body_limit = response_body_limit
        self.user_agent = user_agent
        self.max_connections = max_connections  # give it the worker's concurrency if that is larger
        self._session: aiohttp.ClientSession | None = None
        self._http: httpx.AsyncClient | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Opened on first use: aiohttp needs the running loop, callers may build the client before it.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=MAX_CONNECTIONS_PER_HOST,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ttl_dns_cache=DNS_CACHE_SECONDS,
                resolver=GuardedResolver(allow_private=self.allow_private_targets),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.user_agent},
                # sock_connect rather than connect: waiting for a free pooled connection is not a
                # connect failure; the total bounds it anyway.
                timeout=aiohttp.ClientTimeout(total=self.request_timeout, sock_connect=self.connect_timeout),
                trust_env=False,  # never a proxy from the environment
                auto_decompress=True,
            )
        return self._session

    @property
    def http(self) -> httpx.AsyncClient:
        """An httpx client whose connections are this client's aiohttp pool (same SSRF guard)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=AiohttpTransport(self._open, allow_private=self.allow_private_targets),
                headers={"user-agent": self.user_agent},
                timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout),
                follow_redirects=False,
                trust_env=False,
            )
        return self._http

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        """POST `body` to `url`. Calls aiohttp directly: the httpx layer costs (see module docstring)."""
        started = time.perf_counter()
        target, refused = _target(url)
        if refused is not None and not self.allow_private_targets:
            return self._failed(ForbiddenAddressError(refused), started)
        status: int | None = None
        picked: dict[str, str] = {}
        raw = b""
        truncated = False
        try:
            async with (self._session or self._open()).post(
                target, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                found = response.headers
                picked = {name: found[name] for name in RESPONSE_HEADERS if name in found}
                raw, truncated = await _read_limited(response.content, self.response_body_limit)
        except Exception as exc:  # the contract is "never raises"; CancelledError still propagates
            return self._failed(translate(exc), started, status, picked)
        return HttpResult(
            status, picked, raw.decode("utf-8", "replace"), truncated, (time.perf_counter() - started) * 1000
        )

    async def send_httpx(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        """The same as `send`, through the httpx API (`self.http`); kept for comparison and for callers
        that want httpx objects."""
        started = time.perf_counter()
        _, refused = _target(url)  # before httpx's own URL parser, which refuses some numeric forms itself
        if refused is not None and not self.allow_private_targets:
            return self._failed(ForbiddenAddressError(refused), started)
        status: int | None = None
        picked: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        try:
            # httpx has per-operation timeouts only; the total is ours.
            async with asyncio.timeout(self.request_timeout):
                async with self.http.stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
                    picked = {name: response.headers[name] for name in RESPONSE_HEADERS if name in response.headers}
                    async for chunk in response.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > self.response_body_limit:
                            break
        except Exception as exc:
            return self._failed(translate(exc), started, status, picked)
        raw = b"".join(chunks)
        return HttpResult(
            status,
            picked,
            raw[: self.response_body_limit].decode("utf-8", "replace"),
            len(raw) > self.response_body_limit,
            (time.perf_counter() - started) * 1000,
        )

    def _failed(
        self,
        exc: httpx.HTTPError,
        started: float,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        kind = error_kind(exc)
        message = _short(exc)
        if isinstance(exc, httpx.ConnectTimeout):
            message = f"could not connect within {self.connect_timeout:g} s"
        elif kind == "timeout":
            message = f"no complete response within {self.request_timeout:g} s"
        if type(exc) is httpx.TransportError:  # translate() did not recognise it: worth a look
            logger.warning("unexpected delivery error: %s", message, exc_info=exc.__cause__ or exc)
        return HttpResult(status, headers or {}, "", False, (time.perf_counter() - started) * 1000, kind, message)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()


async def _read_limited(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of a body and whether there was more; reads at most limit + 1 bytes, so a
    huge body costs no more than a small one (its connection is then closed, not pooled)."""
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0 and not content.at_eof():
        chunk = await content.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return data[:limit], len(data) > limit
