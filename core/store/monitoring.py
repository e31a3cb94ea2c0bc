"""Monitoring queries: the delivery log by filter, attempt logs, endpoint stats, the queue overview.

Every answer reads indexes and counters kept by the Lua scripts; nothing scans the whole log. The
delivery indexes are ordered by id (= creation time), so pages are lexical ranges.
"""

from __future__ import annotations

import heapq
import json
from typing import Any

from core import keys
from core.clock import now_ms
from core.errors import NotFound
from core.ids import created_ms, lower_bound
from core.models import QUEUED, Delivery, DeliveryFilter, DeliveryStatus
from core.store.connection import Redis, typed
from core.store.deliveries import DeliveryStore
from core.store.paging import page

# Candidates examined per request when a filter is not served by an index (e.g. event type and
# endpoint together): the page may come back short, with a cursor to continue.
MAX_SCANNED = 5000
OUTCOMES = ("succeeded", "failed", "retrying", "overloaded")


class MonitoringStore:
    def __init__(self, client: Redis, deliveries: DeliveryStore) -> None:
        self._redis = client
        self._deliveries = deliveries

    async def list_deliveries(
        self, wanted: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first. `cursor` is the last id of the previous page; it stays exact while new
        deliveries arrive (they sort before it) and while listed ones change status."""
        if wanted.message_id is not None:
            return await self._by_message(wanted, limit, cursor)
        sources, residual = _choose_indexes(wanted)
        high = (
            f"({cursor}"
            if cursor
            else (f"({lower_bound('dlv', wanted.until_ms + 1)}" if wanted.until_ms is not None else "+")
        )
        low = f"[{lower_bound('dlv', wanted.since_ms)}" if wanted.since_ms is not None else "-"
        found: list[Delivery] = []
        scanned = 0
        batch = min(max(limit, 50), 500)
        while scanned < MAX_SCANNED:
            candidates = await self._merge(sources, high, low, batch)
            if not candidates:
                return found, None
            scanned += len(candidates)
            rows = await self._deliveries.get_many(candidates)
            for delivery in rows:
                if residual(delivery):
                    found.append(delivery)
                    if len(found) == limit:
                        return found, delivery.id
            if len(candidates) < batch:
                return found, None
            high = f"({candidates[-1]}"
        return found, high[1:]  # scanned enough: continue from here next time

    async def count_estimate(self, wanted: DeliveryFilter) -> int | None:
        """How many deliveries match, when an index answers exactly (endpoint and/or statuses only:
        the status sets are disjoint, so their sizes add up); None when only a scan could tell."""
        if wanted.event_type is not None or wanted.message_id is not None:
            return None
        if wanted.since_ms is not None or wanted.until_ms is not None:
            return None
        sources, _residual = _choose_indexes(wanted)
        pipe = self._redis.pipeline(transaction=False)
        for key in sources:
            pipe.zcard(key)
        return sum(int(n) for n in await pipe.execute())

    async def _merge(self, sources: list[str], high: str, low: str, count: int) -> list[str]:
        """The `count` largest ids below `high` across several index sets (a k-way merge)."""
        pipe = self._redis.pipeline(transaction=False)
        for key in sources:
            pipe.zrevrangebylex(key, high, low, start=0, num=count)
        lists: list[list[str]] = await pipe.execute()
        merged = heapq.merge(*lists, reverse=True)
        out: list[str] = []
        for did in merged:
            if not out or out[-1] != did:
                out.append(did)
            if len(out) == count:
                break
        return out

    async def _by_message(
        self, wanted: DeliveryFilter, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        raw = await typed(self._redis.hget(keys.message(wanted.message_id or ""), "deliveries"))
        dids = sorted((d for d in (raw or "").split(",") if d), reverse=True)
        if cursor:
            dids = [d for d in dids if d < cursor]
        _sources, residual = _choose_indexes(wanted)
        rows = [d for d in await self._deliveries.get_many(dids) if residual(d) and _in_time(d, wanted)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, rows[-1].id if more else None

    async def attempts(self, did: str) -> list[dict[str, Any]]:
        aids = await typed(self._redis.lrange(keys.delivery_attempts(did), 0, -1))
        return await self._attempt_records(aids)

    async def _attempt_records(self, aids: list[str]) -> list[dict[str, Any]]:
        if not aids:
            return []
        raw = await self._redis.mget([keys.attempt(a) for a in aids])
        records = []
        for aid, text in zip(aids, raw, strict=True):
            if text is None:
                continue  # expired by retention
            record = json.loads(text)
            record["id"] = aid
            record["delivery_id"] = aid.rsplit(".", 1)[0]
            records.append(record)
        return records

    async def actions(self, did: str) -> list[dict[str, Any]]:
        return [json.loads(a) for a in await typed(self._redis.lrange(keys.delivery_actions(did), 0, -1))]

    async def endpoint_actions(self, eid: str) -> list[dict[str, Any]]:
        return [json.loads(a) for a in await typed(self._redis.lrange(keys.endpoint_actions(eid), 0, -1))]

    async def endpoint_attempts(
        self, eid: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The endpoint's attempt log, newest first."""
        aids, next_cursor = await page(
            self._redis, keys.endpoint_attempts(eid), limit=limit, cursor=cursor, newest_first=True
        )
        return await self._attempt_records(aids), next_cursor

    async def endpoint_stats(self, eid: str) -> dict[str, Any]:
        now = now_ms()
        minute = now // 60000
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys.endpoint(eid), ["url", "rate", "deleted", "enabled", "disabled_reason"])
        pipe.hgetall(keys.endpoint_counts(eid))
        pipe.zcount(keys.due(eid), "-inf", now)
        pipe.zcard(keys.inflight(eid))
        pipe.hgetall(keys.endpoint_flow(eid))
        for status in ("pending", "retrying"):
            pipe.zrangebylex(keys.index_by_endpoint_status(eid, status), "-", "+", start=0, num=1)
        for m in range(minute - 59, minute + 1):
            pipe.hmget(keys.endpoint_minute(eid, m), list(OUTCOMES))
        results = await pipe.execute()
        (url, rate, deleted, enabled, disabled_reason), counts, due_now, in_flight, flow = results[:5]
        if url is None or deleted == "1":
            raise NotFound("endpoint", eid)
        oldest = [ids[0] for ids in results[5:7] if ids]
        buckets = [[int(v or 0) for v in row] for row in results[7:]]
        elapsed = (now % 60000) / 60000
        # Sliding minute: this minute so far plus the unelapsed share of the previous one.
        last_minute = [round(cur + prev * (1 - elapsed)) for prev, cur in zip(buckets[-2], buckets[-1], strict=True)]
        last_hour = [sum(col) for col in zip(*buckets, strict=True)]
        backlog = int(counts.get("pending", 0)) + int(counts.get("retrying", 0))
        effective = float(flow.get("eff_rate") or rate)
        paused_until = int(float(flow.get("paused_until") or 0))
        paused = paused_until > now or enabled != "1"
        hour = dict(zip(OUTCOMES, last_hour, strict=True))
        attempts_hour = sum(hour.values())
        oldest_ms = min((created_ms(d) for d in oldest), default=None)
        wait_ms = max(0, paused_until - now) if paused_until < 2**52 else None
        return {
            "endpoint_id": eid,
            "backlog": backlog,
            "due_now": int(due_now),
            "in_flight": int(in_flight),
            "counts": {s.value: int(counts.get(s.value, 0)) for s in DeliveryStatus},
            "last_minute": dict(zip(OUTCOMES, last_minute, strict=True)),
            "last_hour": hour,
            "success_ratio": round(hour["succeeded"] / attempts_hour, 4) if attempts_hour else None,
            "rate_limit_per_minute": int(rate),
            "effective_rate_per_minute": effective,
            "paused": paused,
            "paused_until_ms": paused_until if paused_until > now and paused_until < 2**52 else None,
            "pause_reason": ("gone" if disabled_reason == "gone" else "disabled")
            if enabled != "1"
            else ((flow.get("pause_reason") or None) if paused_until > now else None),
            "oldest_pending_ms": oldest_ms,
            "oldest_pending_age_seconds": round((now - oldest_ms) / 1000, 3) if oldest_ms else None,
            "estimated_drain_seconds": None
            if (enabled != "1" or wait_ms is None)
            else round(wait_ms / 1000 + backlog / max(effective, 1e-9) * 60, 1),
        }

    async def queue_overview(self, *, pump_interval: float, top: int = 10) -> dict[str, Any]:
        now = now_ms()
        alive_since = now - int(3 * pump_interval * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.COUNTS)
        for status in ("pending", "retrying"):
            pipe.zrangebylex(keys.index_by_status(status), "-", "+", start=0, num=1)
        pipe.zrevrangebyscore(keys.BACKLOG, "+inf", 1, start=0, num=top, withscores=True)
        pipe.hgetall(keys.PUMP_STATS)
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now - 86_400_000)
        pipe.zrangebyscore(keys.WORKERS, alive_since, "+inf", withscores=True)
        pipe.zcount(keys.ACTIVE, "-inf", now)
        counts, pending, retrying, largest, pump, _, workers, ready = await pipe.execute()
        oldest = min((created_ms(ids[0]) for ids in (pending, retrying) if ids), default=None)
        last_run = int(pump["last_run_ms"]) if pump.get("last_run_ms") else None
        return {
            "counts": {s.value: int(counts.get(s.value, 0)) for s in DeliveryStatus},
            "backlog": sum(int(counts.get(s.value, 0)) for s in QUEUED),
            "endpoints_ready": int(ready),
            "oldest_pending_ms": oldest,
            "oldest_pending_age_seconds": round((now - oldest) / 1000, 3) if oldest else None,
            "largest_backlogs": [{"endpoint_id": eid, "backlog": int(n)} for eid, n in largest],
            "pump": {
                "last_run_ms": last_run,
                "seconds_since_last_run": round((now - last_run) / 1000, 3) if last_run else None,
                "lag_ms": int(pump.get("lag_ms", 0)) if pump else None,
                "interval_seconds": pump_interval,
                "late": last_run is None or now - last_run > 2 * pump_interval * 1000,
            },
            "workers": [{"id": wid, "last_heartbeat_ms": int(at)} for wid, at in workers],
        }

    async def endpoint_loads(self, eids: list[str]) -> dict[str, tuple[int, int]]:
        """Each endpoint's (backlog, in flight), from the counters: for the per-endpoint metrics gauges."""
        pipe = self._redis.pipeline(transaction=False)
        for eid in eids:
            pipe.zscore(keys.BACKLOG, eid)
            pipe.zcard(keys.inflight(eid))
        raw = await pipe.execute()
        return {eid: (int(raw[2 * i] or 0), int(raw[2 * i + 1])) for i, eid in enumerate(eids)}


def _choose_indexes(wanted: DeliveryFilter) -> tuple[list[str], Any]:
    """The index sets that serve the filter, and a check for whatever they do not cover."""
    eid, statuses, event_type = wanted.endpoint_id, wanted.statuses, wanted.event_type
    if eid and statuses:
        sources = [keys.index_by_endpoint_status(eid, s.value) for s in statuses]
    elif eid:
        sources = [keys.index_by_endpoint(eid)]
    elif statuses:
        sources = [keys.index_by_status(s.value) for s in statuses]
    elif event_type:
        sources = [keys.index_by_event_type(event_type)]
    else:
        sources = [keys.DELIVERY_INDEX]

    def residual(d: Delivery) -> bool:
        return (
            (not eid or d.endpoint_id == eid)
            and (not statuses or d.status in statuses)
            and (not event_type or d.event_type == event_type)
        )

    return sources, residual


def _in_time(d: Delivery, wanted: DeliveryFilter) -> bool:
    created = created_ms(d.id)
    return (wanted.since_ms is None or created >= wanted.since_ms) and (
        wanted.until_ms is None or created <= wanted.until_ms
    )
