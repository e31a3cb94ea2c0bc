"""Who is calling: the bearer key's principal (cached in-process for a few seconds), bounded against
key guessing per client address (service/guessing.py), and the scope check each route makes before it
touches anything.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request

from core.models import ApiKey, Scope
from core.store.api_keys import ApiKeyStore
from service.guessing import GuessLimiter, client_bucket
from service.problems import Problem

# The bootstrap key (settings.api_key) is not stored; it always answers as this principal.
BOOTSTRAP = ApiKey(id="bootstrap", name="bootstrap", scopes=frozenset({Scope.ADMIN}), created_at_ms=0)

# Ingest runs at thousands of requests a second, so key lookups are cached in-process. The price: a
# key deleted through another process keeps working here for up to this long (this process forgets
# it at once). openapi.yaml says the same.
CACHE_SECONDS = 5.0
# Unknown keys are cached too (they cannot become valid: new keys are random), so the cache is
# bounded against callers trying many keys; when full, the least recently used entry goes, so a flood of
# made-up keys cannot push out a key in steady use (emptying it all would send every caller to Redis).
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
        limiter: GuessLimiter | None = None,
        cache_seconds: float = CACHE_SECONDS,
        cache_limit: int = CACHE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bootstrap = bootstrap_key.encode() if bootstrap_key else None
        self._api_keys = api_keys
        self._limiter = limiter  # None: no guessing limit (unit tests of the cache)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache_limit = cache_limit
        # sha256(key) -> (valid until, the key's record or None for an unknown key), least recently used
        # first
        self._cache: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()

    async def require(self, request: Request, allowed: frozenset[Scope]) -> ApiKey:
        """The caller's key if it has admin or one of `allowed`; else 401 or 403."""
        return check_scope(await self.principal(request), allowed, f"{request.method} {request.url.path}")

    async def principal(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization")
        if not header:
            raise Problem(401, "Send an API key as 'Authorization: Bearer <key>'.", headers=_MISSING)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "The Authorization header must be 'Bearer <key>'.", headers=_MISSING)
        key = await self.authenticate(token, request.client.host if request.client else None)
        if key is None:
            raise Problem(401, "This API key is unknown or was deleted; use a valid key.", headers=_INVALID)
        return key

    async def authenticate(self, token: str, client_host: str | None) -> ApiKey | None:
        """The key whose plaintext is `token`, or None; 429 (a Problem) for an address past the guessing
        limit. The console's sign-in asks this too. A known-valid key (the bootstrap key, a cached
        one) costs no Redis call; every other attempt is counted first, and a valid one forgiven."""
        bucket = client_bucket(client_host)
        if self._limiter is not None:
            self._limiter.check(bucket)
        known = self._known_valid(token)
        if known is not None:
            return known
        if self._limiter is None:
            return await self._identify(token)
        attempt = await self._limiter.count(bucket)
        key = await self._identify(token)
        await self._limiter.judged(attempt, valid=key is not None)
        return key

    def _known_valid(self, token: str) -> ApiKey | None:
        raw = token.encode()
        if self._bootstrap is not None and hmac.compare_digest(raw, self._bootstrap):
            return BOOTSTRAP
        if len(raw) > MAX_KEY_LENGTH:
            return None
        cached = self._cached(hashlib.sha256(raw).hexdigest(), self._clock())
        return cached[1] if cached is not None else None

    async def _identify(self, token: str) -> ApiKey | None:
        raw = token.encode()
        if self._bootstrap is not None and hmac.compare_digest(raw, self._bootstrap):
            return BOOTSTRAP
        if len(raw) > MAX_KEY_LENGTH:
            return None
        return await self._lookup(token, hashlib.sha256(raw).hexdigest())

    def is_bootstrap(self, key_digest: str) -> bool:
        """Whether `key_digest` is the sha256 of the configured bootstrap key (a console session made
        with it lasts only while that key is configured)."""
        if self._bootstrap is None or not key_digest:
            return False
        return hmac.compare_digest(hashlib.sha256(self._bootstrap).hexdigest(), key_digest)

    def forget(self, key_id: str) -> None:
        """Drop a deleted key from this process's cache so that it stops working here at once."""
        for digest, (_, key) in list(self._cache.items()):
            if key is not None and key.id == key_id:
                del self._cache[digest]

    async def _lookup(self, token: str, digest: str) -> ApiKey | None:
        now = self._clock()
        cached = self._cached(digest, now)
        if cached is not None:
            return cached[1]
        key = await self._api_keys.lookup(token)
        self._cache.pop(digest, None)
        while len(self._cache) >= self._cache_limit:
            self._cache.popitem(last=False)
        self._cache[digest] = (now + self._cache_seconds, key)
        return key

    def _cached(self, digest: str, now: float) -> tuple[float, ApiKey | None] | None:
        """The live entry for `digest`, marked as just used; None if absent or expired."""
        cached = self._cache.get(digest)
        if cached is None or cached[0] <= now:
            return None
        self._cache.move_to_end(digest)
        return cached


def check_scope(key: ApiKey, allowed: frozenset[Scope], what: str) -> ApiKey:
    """`key` if it has admin or one of `allowed`, else 403 naming `what` it was refused (the console
    checks its session's key with this too)."""
    if can(key, allowed):
        return key
    raise Problem(403, f"This API key lacks the scope {what} needs ({_scope_names(allowed)}); use a key that has it.")


def can(key: ApiKey, allowed: frozenset[Scope]) -> bool:
    return Scope.ADMIN in key.scopes or not allowed.isdisjoint(key.scopes)


def _scope_names(allowed: frozenset[Scope]) -> str:
    names = [f"'{scope}'" for scope in sorted(allowed | {Scope.ADMIN})]
    return "one of " + ", ".join(names) if len(names) > 1 else names[0]
