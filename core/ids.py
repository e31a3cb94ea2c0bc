"""Identifiers: a type prefix and a time-ordered, URL-safe core, so ids sort by creation.

Within one process, ids made in the same millisecond still sort in the order they were made (the
random part is incremented, as monotonic ULIDs do), so a batch keeps its order in every index.
"""

from __future__ import annotations

import os
import threading
import time

ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_RANDOM_BITS = 80
_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)


def _base32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(ID_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """`<prefix>_<10 chars of ms timestamp><16 chars of randomness>`, monotonic within a process."""
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        last_ms, last_random = _last
        if ms <= last_ms and last_random + 1 < 2**_RANDOM_BITS:
            ms, random_part = last_ms, last_random + 1
        else:
            random_part = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big") >> 1  # room to increment
        _last = (ms, random_part)
    return f"{prefix}_{_base32(ms, 10)}{_base32(random_part, 16)}"


def created_ms(ident: str) -> int:
    """The creation time embedded in an id made by `new_id` (delivery ids embed their message's)."""
    core = ident.split("_", 1)[1]
    value = 0
    for char in core[:10]:
        value = value * 32 + ID_ALPHABET.index(char)
    return value


def message_id_of(did: str) -> str:
    """The message a delivery belongs to: `dlv_<core>_<n>` is the n-th delivery of `msg_<core>`."""
    return "msg_" + did[4:].rsplit("_", 1)[0]


def delivery_ids_of(mid: str, fanout: int) -> tuple[str, ...]:
    """A message's delivery ids, in fan-out order (ingest numbers them from 1)."""
    return tuple(f"dlv_{mid[4:]}_{n}" for n in range(1, fanout + 1))


def delivery_id_bounds(mid: str) -> tuple[str, str]:
    """Bounds (both exclusive) that a message's delivery ids, and no other ids, fall between in byte
    order: `dlv_<core>_` < `dlv_<core>_<n>` < `dlv_<core>` + "`" (the character after "_")."""
    return f"dlv_{mid[4:]}_", f"dlv_{mid[4:]}`"


def lower_bound(prefix: str, ms: int) -> str:
    """The smallest id of `prefix` created at or after `ms`, for lexical range queries."""
    return f"{prefix}_{_base32(ms, 10)}"
