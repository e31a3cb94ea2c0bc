"""Console sign-in sessions.

The cookie carries a random token; Redis keeps only its SHA-256, so a copy of Redis cannot be
replayed as a cookie. A session names an API key by id and is checked against the key on every
request, so deleting the key signs its sessions out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from core import keys
from core.clock import now_ms
from core.store.connection import Redis, hgetall


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    key_digest: str  # sha256 of the bootstrap key for a bootstrap session, else ""
    csrf: str
    created_ms: int


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client

    async def create(self, key_id: str, key_digest: str, ttl_seconds: int) -> tuple[str, Session]:
        """A new session; returns the cookie token (never stored) and the session."""
        token = secrets.token_urlsafe(32)
        session = Session(key_id, key_digest, secrets.token_urlsafe(32), now_ms())
        name = keys.console_session(_digest(token))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(name, mapping={"key_id": session.key_id, "key_digest": session.key_digest,
                                 "csrf": session.csrf, "created_ms": session.created_ms})
        pipe.expire(name, ttl_seconds)
        await pipe.execute()
        return token, session

    async def get(self, token: str) -> Session | None:
        raw = await hgetall(self._redis, keys.console_session(_digest(token)))
        if not raw:
            return None
        return Session(raw["key_id"], raw.get("key_digest", ""), raw["csrf"], int(raw["created_ms"]))

    async def delete(self, token: str) -> None:
        await self._redis.delete(keys.console_session(_digest(token)))
