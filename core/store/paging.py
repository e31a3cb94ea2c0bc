"""Cursor pagination over a sorted set: stable while members are added, without offsets.

A cursor names the last item returned (its score and member). The next page starts at that
member's current rank + 1, so items added meanwhile at the newer end, and many items sharing one
millisecond (batch ingest), never shift or repeat a page. If the cursor's member has left the set
(a delivery changed status), the page restarts just past its score.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from core.errors import InvalidInput
from core.store.connection import Redis

Filter = Callable[[list[str]], Awaitable[list[bool]]]


def encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{int(score)}:{member}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split(":", 1)
        return int(score), member
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "is not a cursor this API returned") from exc


async def _start_rank(client: Redis, key: str, cursor: str | None, newest_first: bool, bound: int | None) -> int:
    if cursor is not None:
        score, member = decode_cursor(cursor)
        rank = await (client.zrevrank(key, member) if newest_first else client.zrank(key, member))
        if rank is not None:
            return int(rank) + 1
        bound = score
        # Everything strictly newer (older) than the vanished cursor's score was already shown.
        return int(
            await (client.zcount(key, f"({bound}", "+inf") if newest_first else client.zcount(key, "-inf", f"({bound}"))
            + await client.zcount(key, bound, bound)
        )
    if bound is None:
        return 0
    return int(
        await (client.zcount(key, f"({bound}", "+inf") if newest_first else client.zcount(key, "-inf", f"({bound}"))
    )


async def page(
    client: Redis,
    key: str,
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool,
    min_score: int | None = None,
    max_score: int | None = None,
    keep: Filter | None = None,
    max_scanned: int = 5000,
) -> tuple[list[str], str | None]:
    """One page of members of `key` within [min_score, max_score], and the next page's cursor.

    `keep`, if given, filters a batch of candidates (one round trip per batch). At most
    `max_scanned` candidates are examined per call, so a sparse filter cannot turn one request into
    a scan of the whole log: the page may then come back short, with a cursor to go on.
    """
    start_bound = max_score if newest_first else min_score
    rank = await _start_rank(client, key, cursor, newest_first, start_bound)
    result: list[str] = []
    last: tuple[str, float] | None = None
    scanned = 0
    batch = min(max(limit * 2, 50), 1000)
    while scanned < max_scanned:
        fetch = client.zrevrange if newest_first else client.zrange
        rows = await fetch(key, rank, rank + batch - 1, withscores=True)
        if not rows:
            return result, None
        in_range = [(m, s) for m, s in rows if _within(s, min_score, max_score)]
        ended = len(in_range) < len(rows) or len(rows) < batch
        flags = await keep([m for m, _ in in_range]) if keep is not None and in_range else [True] * len(in_range)
        for (member, score), wanted in zip(in_range, flags, strict=True):
            last = (member, score)
            if wanted:
                result.append(member)
                if len(result) == limit:
                    more = not ended or (member, score) != in_range[-1]
                    return result, encode_cursor(score, member) if more else None
        if ended:
            return result, None
        rank += len(rows)
        scanned += len(rows)
    # Scanned enough without filling the page: hand back where the scan got to.
    return result, encode_cursor(last[1], last[0]) if last is not None else None


def _within(score: float, low: int | None, high: int | None) -> bool:
    return (low is None or score >= low) and (high is None or score <= high)
