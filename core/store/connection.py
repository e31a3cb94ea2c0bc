"""The Redis connection: the one place hookpump opens a client (one Redis, or a Redis Cluster), with
reconnect, and the one place redis-py's exceptions become hookpump's (core/errors.py).

Every command, script call and pipeline of the client made here passes through `translated()`, as
HTTPX maps its transport's exceptions in one place: callers of the store never see redis-py's
exception classes and never have to remember to wrap a call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import CrossSlotError, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

# Errors that mean "Redis is not reachable right now" rather than "the command was wrong". On a
# cluster, also a failover or a slot on the move: a primary gone before its replica is promoted
# (CLUSTERDOWN, a write refused by a demoted primary), a slot being migrated (TRYAGAIN), and MOVED/ASK
# redirections redis-py gave up following.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
    ReadOnlyError,
    OutOfMemoryError,
)
# How Redis and redis-py say that one command or script touched keys of more than one slot.
CROSS_SLOT_SIGNS = (
    "CROSSSLOT",
    "must map to the same key slot",  # redis-py's own check before sending
    "do not hash to the same slot",  # a script with flags (#!lua) touching an undeclared key
    "non local key",  # a script touching a key served by another node
    "undeclared keys",  # Valkey, during a slot migration
)
# redis-py's words when no node of a cluster answers.
CLUSTER_UNREACHABLE_SIGNS = ("cannot be connected", "No targets were found")

Redis = aioredis.Redis


@contextmanager
def translated(command: object = "") -> Iterator[None]:
    """Turn redis-py's exceptions into hookpump's, chained (`raise ... from`).

    NoScriptError passes through: redis-py's Script object catches it to load the script and retry.
    A cross-slot refusal is a bug in hookpump, never the caller's fault: it is logged here, and its
    text (which may name keys) stays in the log.
    """
    try:
        yield
    except NoScriptError:
        raise
    except (RedisError, RedisClusterException, OSError) as exc:
        raise translate(exc, command) from exc


def translate(exc: BaseException, command: object = "") -> StoreError:
    text = str(exc)
    if isinstance(exc, ClusterCrossSlotError) or any(sign in text for sign in CROSS_SLOT_SIGNS):
        log.error("a Redis command touched more than one cluster slot (a bug in hookpump): %s: %s",
                  _name(command), text)
        return CrossSlotError(f"{_name(command)} touched keys of more than one cluster slot")
    if isinstance(exc, TRANSIENT_ERRORS) or (
        isinstance(exc, RedisClusterException) and any(sign in text for sign in CLUSTER_UNREACHABLE_SIGNS)
    ):
        return StoreUnavailable(f"Redis is unreachable: {text or type(exc).__name__}")
    return StoreError(f"Redis refused {_name(command)}: {text or type(exc).__name__}")


def _name(command: object) -> str:
    if isinstance(command, bytes):
        command = command.decode(errors="replace")
    return str(command).split(" ", 1)[0].upper() or "a command"


class TranslatingRedis(aioredis.Redis):
    """One Redis server, its errors translated."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with translated(args[0]):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py 5

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return TranslatingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class TranslatingPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with translated("MULTI" if self.is_transaction else "pipeline"):
            return await super().execute(raise_on_error)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        with translated(args[0]):
            return await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]


class TranslatingRedisCluster(RedisCluster):
    """A Redis Cluster, its errors translated. redis-py follows MOVED and ASK, waits out TRYAGAIN and
    re-reads the slot map after a failover (CLUSTERDOWN, a lost node) before an error reaches here."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with translated(args[0]):
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        with translated("MULTI" if transaction else "pipeline"):
            super().pipeline(transaction, shard_hint)  # refuses a transaction: MULTI is single-slot work
        # redis-py 5 leaves ClusterPipeline's inherited `connection_pool` declared abstract.
        return TranslatingClusterPipeline(self)  # type: ignore[abstract]


class TranslatingClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        with translated("pipeline"):
            return await super().execute(raise_on_error, allow_redirections)


RECONNECT_RETRIES = 20


def reconnect_options(retries: int = RECONNECT_RETRIES) -> dict[str, Any]:
    """redis-py options that retry a command for ~30 s (20 retries) across a Redis restart before giving up.

    Shared with arq's RedisSettings (scheduler/job_queue.py): without them arq's poll loop dies on the
    first connection error of a restart.
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        "retry_on_timeout": True,
    }


# On a cluster a lost node is a failover, not a restart: retry a connection briefly, then let redis-py
# re-read the slot map (it asks the other nodes) and the caller answer 503 until a replica is promoted.
CLUSTER_NODE_RETRIES = 2
CLUSTER_NODE_BACKOFF_CAP_SECONDS = 0.5


def create_redis(
    url: str, *, cluster: bool = False, max_connections: int = 64, reconnect_retries: int = RECONNECT_RETRIES
) -> Redis:
    """The store's client: one Redis at `url`, or with `cluster` a Redis Cluster that `url` seeds
    (any node; the client learns the others). `reconnect_retries` bounds one Redis's retries (tests
    of an outage lower it)."""
    if cluster:
        client = TranslatingRedisCluster.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,  # per node
            health_check_interval=15,
            socket_keepalive=True,
            retry=Retry(ExponentialBackoff(cap=CLUSTER_NODE_BACKOFF_CAP_SECONDS, base=0.05),
                        retries=CLUSTER_NODE_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        )
        # The stores are written against redis-py's Redis, whose command methods RedisCluster shares;
        # what differs (MULTI, pub/sub, scripts without KEYS) is refused by the cluster and translated.
        return cast("Redis", client)
    # TCP keepalive notices a silently dead peer; redis-py's unix-socket connection rejects the option.
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    single: Redis = TranslatingRedis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        health_check_interval=15,
        **tcp,
        **reconnect_options(reconnect_retries),
    )
    return single


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
