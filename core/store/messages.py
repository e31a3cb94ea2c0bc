"""Messages: atomic ingest (idempotency, fan-out, deliveries) and reading a message back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core import keys
from core.clock import now_ms
from core.errors import Conflict, InvalidInput, NotFound
from core.ids import created_ms, delivery_ids_of, new_id
from core.models import Message
from core.store.connection import Redis, load_script


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
