"""What a 202 promises about a machine crash (HOOKPUMP_DURABILITY), and the Redis persistence each
promise needs. Pure: the Redis start-up check that applies it is core/store/durability.py.

- strict: Redis appends every write to its append-only file and fsyncs it before it answers, so a
  202 means the message is on disk. Redis fsyncs once per event-loop iteration for all the clients
  served in it (a group commit), so concurrent requests share an fsync.
- fast: Redis fsyncs once a second; up to about a second of 202-answered messages can be lost
  with the host (not with a crash of Redis alone: the kernel still holds what was written).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Durability(StrEnum):
    STRICT = "strict"
    FAST = "fast"


# The append-only settings hookpump gives a Redis it starts itself (`hookpump dev`).
REDIS_PERSISTENCE: dict[Durability, dict[str, str]] = {
    Durability.STRICT: {"appendonly": "yes", "appendfsync": "always"},
    Durability.FAST: {"appendonly": "yes", "appendfsync": "everysec"},
}
# appendfsync values that keep each promise; a stricter Redis keeps a weaker promise too.
KEEPS_PROMISE: dict[Durability, frozenset[str]] = {
    Durability.STRICT: frozenset({"always"}),
    Durability.FAST: frozenset({"always", "everysec"}),
}


def parse_durability(raw: str) -> Durability:
    try:
        return Durability(raw.strip().lower())
    except ValueError:
        raise ValueError(
            "must be 'strict' (a 202 is on disk) or 'fast' (up to ~1 s can be lost with the host)"
        ) from None


def redis_server_arguments(durability: Durability) -> list[str]:
    """`--appendonly yes --appendfsync ...` for a redis-server command line."""
    return [part for name, value in REDIS_PERSISTENCE[durability].items() for part in (f"--{name}", value)]


def unkept_promise(durability: Durability, config: Mapping[str, str]) -> str | None:
    """Why a Redis with this CONFIG GET answer cannot keep `durability`'s promise; None if it can."""
    appendonly, appendfsync = config.get("appendonly", "?"), config.get("appendfsync", "?")
    if appendonly != "yes":
        return f"appendonly is {appendonly!r}: it keeps no append-only file, so accepted messages live in memory only"
    if appendfsync not in KEEPS_PROMISE[durability]:
        wanted = " or ".join(repr(value) for value in sorted(KEEPS_PROMISE[durability]))
        return f"appendfsync is {appendfsync!r}, and {durability.value} needs {wanted}"
    return None
