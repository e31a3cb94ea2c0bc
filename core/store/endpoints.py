"""Endpoint records: create, read, list, update, delete, rotate secrets, and the pump's flow state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core import keys
from core.clock import now_ms
from core.errors import NotFound
from core.ids import new_id
from core.models import Endpoint, PauseReason, Secret
from core.store.connection import Redis, hgetall, load_script
from core.store.paging import page


@dataclass(frozen=True, slots=True)
class EndpointFlow:
    """The pump's live view of an endpoint: its pace and whether it is paused."""

    effective_rate_per_minute: float
    paused_until_ms: int
    pause_reason: PauseReason | None
    paused_at_ms: int | None
    backoff_level: int


class EndpointStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client
        self._save = load_script(client, "endpoint_save")
        self._delete = load_script(client, "endpoint_delete")

    async def create(self, fields: dict[str, Any], secret: str) -> Endpoint:
        """`fields`: url, rate_limit_per_minute, max_in_flight, event_types, headers, secret_headers,
        description, enabled, trace_propagation (already validated by the caller)."""
        now = now_ms()
        eid = new_id("ep", now)
        record = _to_hash(fields)
        record.update(
            secrets=json.dumps([[secret, now, None]]),
            created_ms=str(now),
            updated_ms=str(now),
            deleted="0",
            disabled_reason="",
        )
        await self._save(args=[eid, now, "create", *_flatten(record)])
        return await self.get(eid)

    async def get(self, eid: str, *, include_deleted: bool = False) -> Endpoint:
        raw = await hgetall(self._redis, keys.endpoint(eid))
        if not raw or (raw.get("deleted") == "1" and not include_deleted):
            raise NotFound("endpoint", eid)
        return _from_hash(eid, raw)

    async def get_many(self, eids: list[str]) -> list[Endpoint]:
        pipe = self._redis.pipeline(transaction=False)
        for eid in eids:
            pipe.hgetall(keys.endpoint(eid))
        rows = await pipe.execute()
        return [_from_hash(eid, raw) for eid, raw in zip(eids, rows, strict=True) if raw and raw.get("deleted") != "1"]

    async def list(self, *, limit: int, cursor: str | None) -> tuple[list[Endpoint], str | None]:
        eids, next_cursor = await page(self._redis, keys.ENDPOINTS, limit=limit, cursor=cursor, newest_first=False)
        return await self.get_many(eids), next_cursor

    async def update(self, eid: str, changes: dict[str, Any]) -> Endpoint:
        record = _to_hash(changes)
        record["updated_ms"] = str(now_ms())
        if not await self._save(args=[eid, now_ms(), "update", *_flatten(record)]):
            raise NotFound("endpoint", eid)
        return await self.get(eid)

    async def delete(self, eid: str) -> None:
        if not await self._delete(args=[eid, now_ms()]):
            raise NotFound("endpoint", eid)

    async def rotate_secret(self, eid: str, new_secret: str, grace_seconds: float) -> Endpoint:
        """The new secret signs from now on; the previous ones keep signing until the grace ends."""
        endpoint = await self.get(eid)
        now = now_ms()
        expires = now + int(grace_seconds * 1000)
        kept = [
            [s.value, s.created_at_ms, min(s.expires_at_ms or expires, expires)]
            for s in endpoint.secrets
            if s.expires_at_ms is None or s.expires_at_ms > now
        ]
        return await self.update(eid, {"_secrets": json.dumps([[new_secret, now, None], *kept])})

    async def flow(self, eid: str) -> EndpointFlow:
        raw = await hgetall(self._redis, keys.endpoint_flow(eid))
        reason = raw.get("pause_reason") or None
        return EndpointFlow(
            effective_rate_per_minute=float(raw.get("eff_rate") or 0),
            paused_until_ms=int(float(raw.get("paused_until") or 0)),
            pause_reason=PauseReason(reason) if reason else None,
            paused_at_ms=int(raw["paused_at"]) if raw.get("paused_at") else None,
            backoff_level=int(raw.get("backoff_level") or 0),
        )


def _to_hash(fields: dict[str, Any]) -> dict[str, str]:
    """Domain field names -> hash fields (see core/keys.py for the layout)."""
    names = {
        "url": "url",
        "rate_limit_per_minute": "rate",
        "min_rate_per_minute": "min_rate",
        "max_in_flight": "max_in_flight",
        "description": "description",
        "_secrets": "secrets",
    }
    out: dict[str, str] = {}
    for name, value in fields.items():
        if name in names:
            out[names[name]] = str(value)
        elif name == "event_types":
            out["event_types"] = "" if value is None else json.dumps(sorted(set(value)))
        elif name == "headers":
            out["headers"] = json.dumps(value)
        elif name == "secret_headers":
            out["secret_headers"] = json.dumps(list(value))
        elif name == "enabled":
            out["enabled"] = "1" if value else "0"
        elif name == "trace_propagation":
            out["trace"] = "1" if value else "0"
        else:
            raise KeyError(name)
    return out


def _flatten(record: dict[str, str]) -> list[str]:
    return [part for pair in record.items() for part in pair]


def _from_hash(eid: str, raw: dict[str, str]) -> Endpoint:
    event_types = raw.get("event_types") or ""
    return Endpoint(
        id=eid,
        url=raw["url"],
        rate_limit_per_minute=int(raw["rate"]),
        max_in_flight=int(raw["max_in_flight"]),
        event_types=tuple(json.loads(event_types)) if event_types else None,
        headers=json.loads(raw.get("headers") or "{}"),
        description=raw.get("description", ""),
        enabled=raw.get("enabled") == "1",
        created_at_ms=int(raw["created_ms"]),
        updated_at_ms=int(raw["updated_ms"]),
        disabled_reason=raw.get("disabled_reason") or None,
        min_rate_per_minute=int(raw.get("min_rate") or 1),
        trace_propagation=raw.get("trace", "1") == "1",
        secrets=tuple(Secret(v, c, e) for v, c, e in json.loads(raw.get("secrets") or "[]")),
        secret_headers=tuple(json.loads(raw.get("secret_headers") or "[]")),
    )
