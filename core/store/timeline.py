"""An endpoint's recent sending, second by second: requests sent per second (counted by complete.lua
in per-minute hashes) and the pause events the pump's overload control records."""

from __future__ import annotations

import json
from typing import Any

from core import keys
from core.store.connection import Redis, typed

PAUSES_KEPT = 100


class TimelineStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client

    async def sends_per_second(self, eid: str, first_second: int, last_second: int) -> list[int]:
        """Requests started in each unix second from `first_second` to `last_second` inclusive; a
        second with no send is 0, so the list is dense."""
        minutes = range(first_second // 60, last_second // 60 + 1)
        pipe = self._redis.pipeline(transaction=False)
        for minute in minutes:
            pipe.hgetall(keys.endpoint_sent(eid, minute))
        counts: dict[int, int] = {}
        for bucket in await pipe.execute():
            for second, n in bucket.items():
                counts[int(second)] = int(n)
        return [counts.get(second, 0) for second in range(first_second, last_second + 1)]

    async def pauses(self, eid: str) -> list[dict[str, Any]]:
        """The recorded pause events, newest first; an entry that is not a JSON object is skipped."""
        raw = await typed(self._redis.lrange(keys.endpoint_pauses(eid), 0, PAUSES_KEPT - 1))
        events = []
        for text in raw:
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events
