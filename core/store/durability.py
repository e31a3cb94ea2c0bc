"""The start-up check that the Redis of HOOKPUMP_REDIS_URL keeps the HOOKPUMP_DURABILITY promise.

strict is refused (ConfigError) on a Redis that would not keep it; fast only warns, as it always ran.
"""

from __future__ import annotations

import asyncio
import logging

from core.durability import Durability, unkept_promise
from core.errors import ConfigError, StoreError, StoreUnavailable
from core.settings import Settings
from core.store.connection import create_redis, typed

logger = logging.getLogger(__name__)

UNREACHABLE: tuple[type[BaseException], ...] = (TimeoutError, StoreUnavailable)

# strict waits for a Redis that is still starting (as the first command would); fast, which
# never needed the answer, does not hold up a start-up for it.
REACH_TIMEOUT = {Durability.STRICT: 30.0, Durability.FAST: 3.0}
FIX = {
    Durability.STRICT: (
        "set `appendonly yes` and `appendfsync always` in its redis.conf (or CONFIG SET both, then CONFIG REWRITE), "
        "or set HOOKPUMP_DURABILITY=fast to accept losing up to a second of accepted messages with the host"
    ),
    Durability.FAST: "set `appendonly yes` and `appendfsync everysec` (or always) in its redis.conf",
}


async def check_durability(settings: Settings) -> None:
    """Ask Redis (CONFIG GET) whether it persists as `settings.durability` promises."""
    durability = settings.durability
    if not settings.durability_check:
        logger.info("HOOKPUMP_DURABILITY=%s: not checked against Redis (HOOKPUMP_DURABILITY_CHECK=false)", durability)
        return
    if settings.redis_url is None:
        raise ValueError("settings.redis_url is required to check durability")
    client = create_redis(settings.redis_url, max_connections=1)
    try:
        async with asyncio.timeout(REACH_TIMEOUT[durability]):
            config: dict[str, str] = await typed(client.config_get("append*"))
    except UNREACHABLE as exc:
        if durability is Durability.STRICT:
            raise StoreUnavailable(
                f"HOOKPUMP_DURABILITY=strict: could not reach Redis to check its persistence: {exc or 'timed out'}"
            ) from exc
        logger.warning("HOOKPUMP_DURABILITY=fast: Redis not reachable to check its persistence: %s", exc or "timed out")
        return
    except StoreError as exc:  # CONFIG renamed away, or an ACL without +config|get (the door's translation)
        refused = (
            f"Redis refuses CONFIG GET ({exc}), so hookpump cannot check that it persists as "
            f"{durability.value} needs; managed Redis services often disable CONFIG. Confirm in its settings "
            "that the append-only file is on with appendfsync always (strict) or everysec (fast), then set "
            "HOOKPUMP_DURABILITY_CHECK=false"
        )
        if durability is Durability.STRICT:
            raise ConfigError("HOOKPUMP_DURABILITY", f"strict, but {refused}") from exc
        logger.warning("HOOKPUMP_DURABILITY=fast: %s", refused)
        return
    finally:
        await client.aclose()
    problem = unkept_promise(durability, config)
    if problem is None:
        logger.info("HOOKPUMP_DURABILITY=%s: Redis has appendfsync %s", durability, config.get("appendfsync"))
    elif durability is Durability.STRICT:
        raise ConfigError(
            "HOOKPUMP_DURABILITY", f"strict needs Redis to fsync every write before it answers, but {problem}; "
            f"{FIX[durability]}"
        )  # fmt: skip
    else:
        logger.warning(
            "HOOKPUMP_DURABILITY=fast promises that at most ~1 s of accepted messages is lost with the host, but "
            "Redis has %s; %s", problem, FIX[durability]
        )  # fmt: skip
