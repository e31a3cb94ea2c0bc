"""Messages: atomic ingest (idempotency, fan-out, deliveries) and reading a message back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from core import keys
from core.clock import now_ms
from core.errors import Conflict, InvalidInput, NotFound
from core.ids import created_ms, delivery_ids_of, new_id
from core.models import Message
from core.store.connection import Redis, load_script

# How long fanout_over trusts its count of endpoints.
ENDPOINT_BOUND_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class NewMessage:
    event_type: str
    payload_json: str  # compact JSON, exactly the bytes that will be signed and sent
    endpoint_ids: list[str] | None  # None: every enabled endpoint whose filter matches
    trace: str = ""  # W3C traceparent of the ingest request


@dataclass(frozen=True, slots=True)
class Idempotency:
    principal: str  # whose key space (the API key id)
    key: str
    body_hash: str


@dataclass(frozen=True, slots=True)
class Accepted:
    messages: list[dict[str, Any]]  # [{id, event_type, created_ms, deliveries: [{id, endpoint_id, status}]}]
    replayed: bool


class MessageStore:
    def __init__(self, client: Redis, *, idempotency_ttl: float, retention: float) -> None:
        self._redis = client
        self._ingest = load_script(client, "ingest")
        self._idempotency_ttl_ms = int(idempotency_ttl * 1000)
        self._retention_ms = int(retention * 1000)
        self._endpoint_bound = 0  # how many endpoints exist, as last read (fanout_over)
        self._endpoint_bound_until = 0.0

    async def ingest(self, messages: list[NewMessage], idempotency: Idempotency | None = None) -> Accepted:
        """Write messages and one pending delivery per target in one atomic step, or nothing.

        Raises InvalidInput for an unknown endpoint id, Conflict for an idempotency key reused with
        a different body. A repeat with the same key and body returns the first answer.
        """
        now = now_ms()
        header = {
            "now": now,
            "idem_key": keys.idempotency(idempotency.principal, idempotency.key) if idempotency else "",
            "idem_hash": idempotency.body_hash if idempotency else "",
            "idem_ttl_ms": self._idempotency_ttl_ms,
            "retention_ms": self._retention_ms,
            "messages": [
                {"id": new_id("msg", now), "event_type": m.event_type, "endpoint_ids": m.endpoint_ids, "trace": m.trace}
                for m in messages
            ],
        }
        reply = json.loads(await self._ingest(args=[json.dumps(header), *(m.payload_json for m in messages)]))
        if reply.get("conflict"):
            raise Conflict("this Idempotency-Key was already used with a different request body")
        if reply.get("unknown_endpoint"):
            where = f"messages[{reply['index']}].endpoint_ids" if len(messages) > 1 else "endpoint_ids"
            raise InvalidInput(where, f"no endpoint with id {reply['unknown_endpoint']!r}")
        accepted = reply["result"]["messages"]
        for message in accepted:
            if not isinstance(message["deliveries"], list):  # cjson turns [] into {}
                message["deliveries"] = []
            # The creation time a message is read back with is its id's (core/keys.py); the id can
            # be a millisecond past `now` when ids made in one millisecond keep their order.
            message["created_ms"] = created_ms(message["id"])
        return Accepted(messages=accepted, replayed=bool(reply.get("replay")))

    async def fanout_over(self, messages: list[NewMessage], cap: int) -> int | None:
        """The deliveries `messages` would create if that is more than `cap`, else None. The exact count
        costs a round trip, so it is made only when a bound cannot settle it: no message goes to more
        endpoints than exist (ZCARD hp:eps, read at most once a second per process, doubled to cover
        endpoints made within that second)."""
        explicit = sum(len(m.endpoint_ids) for m in messages if m.endpoint_ids is not None)
        unlisted = sum(1 for m in messages if m.endpoint_ids is None)
        if unlisted:
            now = time.monotonic()
            if now >= self._endpoint_bound_until:
                self._endpoint_bound = int(await self._redis.zcard(keys.ENDPOINTS))
                self._endpoint_bound_until = now + ENDPOINT_BOUND_SECONDS
            if explicit + unlisted * 2 * self._endpoint_bound <= cap:
                return None
        elif explicit <= cap:
            return None
        count = await self.fanout(messages)
        return count if count > cap else None

    async def fanout(self, messages: list[NewMessage]) -> int:
        """How many deliveries ingest would create for `messages` now, counted without writing (the
        targets ingest.lua's first phase resolves): the listed endpoints, else the enabled endpoints
        subscribed to the event type plus those taking every type (core/keys.py: an endpoint is in
        one of those sets or the other, never both, so the sizes add up)."""
        explicit = sum(len(m.endpoint_ids) for m in messages if m.endpoint_ids is not None)
        types = sorted({m.event_type for m in messages if m.endpoint_ids is None})
        if not types:
            return explicit
        pipe = self._redis.pipeline(transaction=True)  # one consistent view of the sets
        pipe.scard(keys.EVENT_ALL)
        for event_type in types:
            pipe.scard(keys.event_type(event_type))
        every, *subscribed = await pipe.execute()
        per_type = {event_type: int(every) + int(n) for event_type, n in zip(types, subscribed, strict=True)}
        return explicit + sum(per_type[m.event_type] for m in messages if m.endpoint_ids is None)

    async def get(self, mid: str) -> Message:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.message(mid))
        pipe.get(keys.message_payload(mid))
        raw, payload = await pipe.execute()
        if not raw:
            raise NotFound("message", mid)
        if "fanout" in raw:
            delivery_ids = delivery_ids_of(mid, int(raw["fanout"]))
        else:  # written by an older version: the ids as a comma list, the payload in the hash
            delivery_ids = tuple(d for d in raw.get("deliveries", "").split(",") if d)
        return Message(
            id=mid,
            event_type=raw["event_type"],
            payload_json=payload if payload is not None else raw["payload"],
            created_at_ms=created_ms(mid),
            delivery_ids=delivery_ids,
            trace=raw.get("trace", ""),
        )
