"""A scripted webhook receiver: a real HTTP server on loopback that records every request.

Each test gives it a script: a function from the n-th request (and the request) to a `Reply`
(status, headers, delay before answering, or a reset). It records arrival times (wall clock),
headers and bodies so tests can check pacing, Retry-After, signatures and duplicates.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    delay: float = 0.0
    reset: bool = False  # drop the connection instead of answering


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when the request arrived
    path: str
    headers: dict[str, str]
    body: bytes


Script = Callable[[int, web.Request], Reply]


def always(reply: Reply) -> Script:
    return lambda _n, _request: reply


class Receiver:
    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or always(Reply())
        self.received: list[Received] = []
        self.answered: list[tuple[float, int]] = []  # (time the answer was sent, status)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.arrived = asyncio.Event()
        self.in_flight = 0
        self.peak_in_flight = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        n = len(self.received)
        self.received.append(Received(time.time(), request.path, dict(request.headers), body))
        self.arrived.set()
        reply = self.script(n, request)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.reset:
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        self.answered.append((time.time(), reply.status))
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    def for_path(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, count: int, timeout: float, path: str | None = None) -> None:
        """Wait until `count` requests (to `path`, if given) arrived; fail with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            seen = len(self.for_path(path)) if path else len(self.received)
            if seen >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests within {timeout} s, got {seen}")
            await asyncio.sleep(0.01)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most requests that fall in any half-open window [t, t + window) of the given length."""
    ordered = sorted(times)
    best = 0
    j = 0
    for i in range(len(ordered)):
        while ordered[i] - ordered[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def capacity(per_second: float, burst: float = 1.0, refusal: Reply | None = None) -> Script:
    """A receiver that takes `per_second` requests (a token bucket holding `burst`) and refuses the rest,
    with 429 and no Retry-After unless told otherwise: a receiver above its capacity."""
    refused = refusal or Reply(429, body="slow down")
    state = {"tokens": burst, "at": time.time()}

    def script(_n: int, _request: web.Request) -> Reply:
        now = time.time()
        state["tokens"] = min(burst, state["tokens"] + (now - state["at"]) * per_second)
        state["at"] = now
        if state["tokens"] >= 1.0:
            state["tokens"] -= 1.0
            return Reply()
        return refused

    return script
