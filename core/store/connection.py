"""The Redis connection: the one place hookpump opens a client, with reconnect and error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import StoreUnavailable

# Errors that mean "Redis is not reachable right now" rather than "the command was wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

Redis = aioredis.Redis


def reconnect_options() -> dict[str, Any]:
    """redis-py options that retry a command for ~30 s across a Redis restart before giving up.

    Shared with arq's RedisSettings (scheduler/worker.py): without them arq's poll loop dies on the
    first connection error of a restart.
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        "retry_on_timeout": True,
    }


def create_redis(url: str, *, max_connections: int = 64) -> Redis:
    # TCP keepalive notices a silently dead peer; redis-py's unix-socket connection rejects the option.
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    client: Redis = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        health_check_interval=15,
        **tcp,
        **reconnect_options(),
    )
    return client


def load_script(client: Redis, name: str, *, preludes: tuple[str, ...] = ("_lib",)) -> Any:
    """Register `core/store/lua/<name>.lua` behind its preludes (the shared `_lib.lua`, and `_flow.lua`
    for the scripts that run the pacing control loop).

    redis-py's Script object runs EVALSHA and falls back to loading the script on NOSCRIPT (as after
    a Redis restart), so callers just call it.
    """
    lua = resources.files("core.store").joinpath("lua")
    parts = [lua.joinpath(f"{part}.lua").read_text(encoding="utf-8") for part in (*preludes, name)]
    return client.register_script("\n".join(parts))


T = TypeVar("T")


def typed(reply: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py annotates each command as returning "awaitable or value" (one class serves sync and
    async); on the asyncio client it is always awaitable. This states that for mypy."""
    return cast("Awaitable[T]", reply)


async def hgetall(client: Redis, key: str) -> dict[str, str]:
    return await typed(client.hgetall(key))


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turn redis-py's connection failures into StoreUnavailable at the boundary."""
    try:
        yield
    except TRANSIENT_ERRORS as exc:
        raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc
