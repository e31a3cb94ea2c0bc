"""API keys: stored as SHA-256 digests only; the plaintext is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets

from core import keys
from core.clock import now_ms
from core.errors import NotFound
from core.ids import new_id
from core.models import ApiKey, Scope
from core.store.connection import Redis, hgetall
from core.store.paging import page


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client

    async def create(self, name: str, scopes: frozenset[Scope]) -> tuple[ApiKey, str]:
        now = now_ms()
        kid = new_id("key", now)
        plaintext = "hp_" + secrets.token_urlsafe(32)
        hashed = digest(plaintext)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            keys.api_key(hashed),
            mapping={"id": kid, "name": name, "scopes": ",".join(sorted(scopes)), "created_ms": now},
        )
        pipe.set(keys.api_key_id(kid), hashed)
        pipe.zadd(keys.API_KEYS, {kid: now})
        await pipe.execute()
        return ApiKey(kid, name, scopes, now), plaintext

    async def lookup(self, plaintext: str) -> ApiKey | None:
        raw = await hgetall(self._redis, keys.api_key(digest(plaintext)))
        return _from_hash(raw) if raw else None

    async def by_id(self, kid: str) -> ApiKey | None:
        """The key with this id, or None once it has been deleted."""
        hashed = await self._redis.get(keys.api_key_id(kid))
        if hashed is None:
            return None
        raw = await hgetall(self._redis, keys.api_key(hashed))
        return _from_hash(raw) if raw else None

    async def list(self, *, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
        kids, next_cursor = await page(self._redis, keys.API_KEYS, limit=limit, cursor=cursor, newest_first=False)
        pipe = self._redis.pipeline(transaction=False)
        for kid in kids:
            pipe.get(keys.api_key_id(kid))
        hashes = await pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        for hashed in hashes:
            pipe.hgetall(keys.api_key(hashed or "-"))
        rows = await pipe.execute()
        return [_from_hash(raw) for raw in rows if raw], next_cursor

    async def delete(self, kid: str) -> None:
        hashed = await self._redis.get(keys.api_key_id(kid))
        if hashed is None:
            raise NotFound("api key", kid)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.api_key(hashed), keys.api_key_id(kid))
        pipe.zrem(keys.API_KEYS, kid)
        await pipe.execute()


def _from_hash(raw: dict[str, str]) -> ApiKey:
    scopes = frozenset(Scope(s) for s in raw["scopes"].split(",") if s)
    return ApiKey(raw["id"], raw["name"], scopes, int(raw["created_ms"]))
