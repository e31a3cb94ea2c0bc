"""Who is calling: the bearer key's principal (cached in-process for a few seconds) and the scope
check each route makes before it touches anything.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from starlette.requests import Request

from core.models import ApiKey, Scope
from core.store.api_keys import ApiKeyStore
from service.problems import Problem

# The bootstrap key (settings.api_key) is not stored; it always answers as this principal.
BOOTSTRAP = ApiKey(id="bootstrap", name="bootstrap", scopes=frozenset({Scope.ADMIN}), created_at_ms=0)

# Ingest runs at thousands of requests a second, so key lookups are cached in-process. The price: a
# key deleted through another process keeps working here for up to this long (this process forgets
# it at once). openapi.yaml says the same.
CACHE_SECONDS = 5.0
# Unknown keys are cached too (they cannot become valid: new keys are random), so the cache is
# bounded against callers trying many keys; when full it is simply emptied.
CACHE_LIMIT = 10_000
MAX_KEY_LENGTH = 512

# What each route accepts besides admin, which is accepted everywhere.
ADMIN_ONLY: frozenset[Scope] = frozenset()
SENDING = frozenset({Scope.SEND})
READING = frozenset({Scope.READ})
READING_MESSAGES = frozenset({Scope.SEND, Scope.READ})

_MISSING = {"WWW-Authenticate": 'Bearer realm="hookpump"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="hookpump", error="invalid_token"'}


class Authenticator:
    def __init__(
        self,
        bootstrap_key: str | None,
        api_keys: ApiKeyStore,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bootstrap = bootstrap_key.encode() if bootstrap_key else None
        self._api_keys = api_keys
        self._cache_seconds = cache_seconds
        self._clock = clock
        # sha256(key) -> (valid until, the key's record or None for an unknown key)
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def require(self, request: Request, allowed: frozenset[Scope]) -> ApiKey:
        """The caller's key if it has admin or one of `allowed`; else 401 or 403."""
        key = await self.principal(request)
        if Scope.ADMIN in key.scopes or not allowed.isdisjoint(key.scopes):
            return key
        raise Problem(403, f"This API key lacks the scope {request.method} {request.url.path} needs "
                      f"({_scope_names(allowed)}); use a key that has it.")

    async def principal(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization")
        if not header:
            raise Problem(401, "Send an API key as 'Authorization: Bearer <key>'.", headers=_MISSING)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "The Authorization header must be 'Bearer <key>'.", headers=_MISSING)
        raw = token.encode()
        if self._bootstrap is not None and hmac.compare_digest(raw, self._bootstrap):
            return BOOTSTRAP
        if len(raw) > MAX_KEY_LENGTH:
            raise Problem(401, "This API key is unknown or was deleted; use a valid key.", headers=_INVALID)
        key = await self._lookup(token, hashlib.sha256(raw).hexdigest())
        if key is None:
            raise Problem(401, "This API key is unknown or was deleted; use a valid key.", headers=_INVALID)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a deleted key from this process's cache so that it stops working here at once."""
        for digest, (_, key) in list(self._cache.items()):
            if key is not None and key.id == key_id:
                del self._cache[digest]

    async def _lookup(self, token: str, digest: str) -> ApiKey | None:
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await self._api_keys.lookup(token)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, key)
        return key


def _scope_names(allowed: frozenset[Scope]) -> str:
    names = [f"'{scope}'" for scope in sorted(allowed | {Scope.ADMIN})]
    return "one of " + ", ".join(names) if len(names) > 1 else names[0]
