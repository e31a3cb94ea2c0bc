"""Cursor pagination over a sorted set: stable while members are added, without offsets.

A cursor names the last item returned (its score and member). The next page starts at that
member's current rank + 1, so items added meanwhile at the newer end, and many items sharing one
millisecond (batch ingest), never shift or repeat a page. If the cursor's member has left the set
(a delivery changed status), the page restarts just past its score.
"""

from __future__ import annotations

import base64

from core.errors import InvalidInput
from core.store.connection import Redis


def encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{int(score)}:{member}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split(":", 1)
        return int(score), member
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "is not a cursor this API returned") from exc


async def _start_rank(client: Redis, key: str, cursor: str | None, newest_first: bool) -> int:
    if cursor is None:
        return 0
    score, member = decode_cursor(cursor)
    rank = await (client.zrevrank(key, member) if newest_first else client.zrank(key, member))
    if rank is not None:
        return int(rank) + 1
    # The cursor's member has left the set: everything on its side of its score, and its ties, was shown.
    shown = await (client.zcount(key, f"({score}", "+inf") if newest_first else client.zcount(key, "-inf", f"({score}"))
    return int(shown) + int(await client.zcount(key, score, score))


async def page(
    client: Redis, key: str, *, limit: int, cursor: str | None, newest_first: bool
) -> tuple[list[str], str | None]:
    """One page of members of `key`, and the next page's cursor (None at the end)."""
    rank = await _start_rank(client, key, cursor, newest_first)
    fetch = client.zrevrange if newest_first else client.zrange
    rows = await fetch(key, rank, rank + limit, withscores=True)  # one extra row says whether more follow
    if len(rows) <= limit:
        return [member for member, _ in rows], None
    member, score = rows[limit - 1]
    return [m for m, _ in rows[:limit]], encode_cursor(score, member)
