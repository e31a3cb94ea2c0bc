"""Bounds key guessing: authentications with a wrong key are counted per client address (an IPv6
address by its /64, which one host commonly holds whole), and an address past the limit is answered
429 until its window ends, whatever key it sends. The JSON API and the console's sign-in share it.

An attempt is counted *before* its key is looked at (one atomic step in Redis) and a valid key takes
its count back, so concurrent guesses cannot all pass a check made before the count. One address
over the limit holds back only itself: every address has its own count, and nothing is locked globally.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import NamedTuple

from core.store import AuthFailureStore
from service.problems import Problem

GUESS_LIMIT = 10  # wrong keys per address per window
GUESS_WINDOW_SECONDS = 300
# Addresses this process has seen over the limit, kept so that a key answered from the in-process
# cache is refused too; bounded, since a spray of addresses must not grow it without end.
MAX_REMEMBERED_ADDRESSES = 10_000
UNKNOWN_ADDRESS = "unknown"


def client_bucket(host: str | None) -> str:
    """The address a limit counts against: an IPv4 address (IPv4-mapped IPv6 included) as itself, an
    IPv6 address as its /64, anything else (a Unix socket, a test client) as itself."""
    if not host:
        return UNKNOWN_ADDRESS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Attempt(NamedTuple):
    bucket: str
    number: int  # in its window, this one included
    seconds_left: int  # in its window


class GuessLimiter:
    def __init__(
        self,
        failures: AuthFailureStore,
        *,
        limit: int = GUESS_LIMIT,
        window_seconds: int = GUESS_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures = failures
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._blocked: dict[str, float] = {}  # bucket -> when its window ends (clock time)

    def check(self, bucket: str) -> None:
        """429 if this process knows `bucket` is over the limit (no Redis call: it guards the cache too)."""
        until = self._blocked.get(bucket)
        if until is None:
            return
        left = until - self._clock()
        if left <= 0:
            del self._blocked[bucket]
            return
        raise _too_many(left)

    async def count(self, bucket: str) -> Attempt:
        """Count an attempt about to be judged; 429 (and the attempt is not judged) past the limit."""
        count, seconds_left = await self._failures.count(bucket, self._window)
        if count > self._limit:
            self._remember(bucket, seconds_left)
            raise _too_many(seconds_left)
        return Attempt(bucket, count, seconds_left)

    async def judged(self, attempt: Attempt, *, valid: bool) -> None:
        """A valid key takes its count back (it was no guess); the wrong key that used up the window
        makes this process refuse the address at once from now on, even a key from its cache."""
        if valid:
            await self._failures.forgive(attempt.bucket)
        elif attempt.number >= self._limit:
            self._remember(attempt.bucket, attempt.seconds_left)

    def _remember(self, bucket: str, seconds_left: float) -> None:
        now = self._clock()
        if len(self._blocked) >= MAX_REMEMBERED_ADDRESSES:
            self._blocked = {b: until for b, until in self._blocked.items() if until > now}
        if len(self._blocked) < MAX_REMEMBERED_ADDRESSES:  # else Redis's count still refuses it, a call later
            self._blocked[bucket] = now + seconds_left


def _too_many(seconds_left: float) -> Problem:
    return Problem(429, "Too many attempts with a wrong API key from this address; wait for the time in "
                        "Retry-After and try again with a valid key.",
                   headers={"Retry-After": str(max(1, round(seconds_left)))})  # fmt: skip
