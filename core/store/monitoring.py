"""Monitoring from Redis's live state: endpoint stats, the queue overview, counts by status.

Every answer reads counters and the pump's own sets (due, in flight, active) kept by the Lua
scripts; nothing here costs memory per delivery. The delivery log itself (deliveries by filter,
attempts, actions) is in the history store: core/history/log.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core import keys
from core.clock import now_ms
from core.errors import NotFound
from core.models import QUEUED, DeliveryFilter, DeliveryStatus
from core.pacing import Pace, pace_from_flow
from core.store.connection import Redis, hgetall, load_script, typed
from core.store.deliveries import DeliveryStore

OUTCOMES = ("succeeded", "failed", "retrying", "overloaded")


@dataclass(frozen=True, slots=True)
class EndpointLoad:
    backlog: int
    in_flight: int
    pace: Pace


class MonitoringStore:
    def __init__(self, client: Redis, deliveries: DeliveryStore) -> None:
        self._redis = client
        self._deliveries = deliveries
        self._oldest_due = load_script(client, "oldest_due", preludes=())

    async def count_estimate(self, wanted: DeliveryFilter) -> int | None:
        """How many deliveries match, when the status counters answer exactly (endpoint and/or
        statuses only); None when only the history store could tell."""
        if wanted.event_type is not None or wanted.message_id is not None:
            return None
        if wanted.since_ms is not None or wanted.until_ms is not None:
            return None
        key = keys.endpoint_counts(wanted.endpoint_id) if wanted.endpoint_id else keys.COUNTS
        counts = await hgetall(self._redis, key)
        statuses = wanted.statuses or frozenset(DeliveryStatus)
        return sum(int(counts.get(s.value, 0)) for s in statuses)

    async def endpoint_actions(self, eid: str) -> list[dict[str, Any]]:
        return [json.loads(a) for a in await typed(self._redis.lrange(keys.endpoint_actions(eid), 0, -1))]

    async def endpoint_stats(self, eid: str) -> dict[str, Any]:
        now = now_ms()
        minute = now // 60000
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys.endpoint(eid), ["url", "rate", "deleted", "enabled", "disabled_reason", "min_rate"])
        pipe.hgetall(keys.endpoint_counts(eid))
        pipe.zcount(keys.due(eid), "-inf", now)
        pipe.zcard(keys.inflight(eid))
        pipe.hgetall(keys.endpoint_flow(eid))
        # "Oldest pending": the due set's head if it is due, the longest-waiting due delivery (oldest_due.lua).
        pipe.zrangebyscore(keys.due(eid), "-inf", now, start=0, num=1, withscores=True)
        for m in range(minute - 59, minute + 1):
            pipe.hmget(keys.endpoint_minute(eid, m), list(OUTCOMES))
        results = await pipe.execute()
        (url, rate, deleted, enabled, disabled_reason, min_rate), counts, due_now, in_flight, flow = results[:5]
        if url is None or deleted == "1":
            raise NotFound("endpoint", eid)
        head = results[5]
        buckets = [[int(v or 0) for v in row] for row in results[6:]]
        elapsed = (now % 60000) / 60000
        # Sliding minute: this minute so far plus the unelapsed share of the previous one.
        last_minute = [round(cur + prev * (1 - elapsed)) for prev, cur in zip(buckets[-2], buckets[-1], strict=True)]
        last_hour = [sum(col) for col in zip(*buckets, strict=True)]
        backlog = int(counts.get("pending", 0)) + int(counts.get("retrying", 0))
        pace = pace_from_flow(flow, ceiling=int(rate), enabled=enabled == "1")
        effective = pace.effective_per_minute
        paused_until = pace.paused_until_ms
        paused = paused_until > now or enabled != "1"
        hour = dict(zip(OUTCOMES, last_hour, strict=True))
        attempts_hour = sum(hour.values())
        oldest_ms = int(head[0][1]) if head else None
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
            "estimated_drain_seconds": pace.drain_seconds(backlog, now),
            "pacing": {
                "state": pace.state(now).value,
                "effective_rate_per_minute": effective,
                "min_rate_per_minute": int(min_rate or 1),
                "last_failed_rate_per_minute": pace.last_failed_per_minute,
                "accepted_rate_per_minute": pace.accepted_per_minute,
                "refused_whatever_the_rate": pace.refused_whatever_the_rate,
                "last_cut_ms": pace.last_cut_ms,
                "overloads_since_success": pace.overloads_since_success,
            },
        }

    async def queue_overview(self, *, pump_interval: float, top: int = 10) -> dict[str, Any]:
        now = now_ms()
        alive_since = now - int(3 * pump_interval * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.COUNTS)
        pipe.zrevrangebyscore(keys.BACKLOG, "+inf", 1, start=0, num=top, withscores=True)
        pipe.hgetall(keys.PUMP_STATS)
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now - 86_400_000)
        pipe.zrangebyscore(keys.WORKERS, alive_since, "+inf", withscores=True)
        pipe.zcount(keys.ACTIVE, "-inf", now)
        counts, largest, pump, _, workers, ready = await pipe.execute()
        oldest_raw = await self._oldest_due(args=[now])
        oldest = int(oldest_raw) if oldest_raw is not None else None
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

    async def endpoint_loads(self, eids: list[str]) -> dict[str, EndpointLoad]:
        """Each endpoint's backlog, in flight and pace, from the counters: for the per-endpoint gauges."""
        pipe = self._redis.pipeline(transaction=False)
        for eid in eids:
            pipe.zscore(keys.BACKLOG, eid)
            pipe.zcard(keys.inflight(eid))
            pipe.hmget(keys.endpoint(eid), ["rate", "enabled"])
            pipe.hgetall(keys.endpoint_flow(eid))
        raw = await pipe.execute()
        loads: dict[str, EndpointLoad] = {}
        for i, eid in enumerate(eids):
            backlog, in_flight, (rate, enabled), flow = raw[4 * i : 4 * i + 4]
            if rate is None:
                continue  # deleted since it was listed
            pace = pace_from_flow(flow, ceiling=int(rate), enabled=enabled == "1")
            loads[eid] = EndpointLoad(int(backlog or 0), int(in_flight), pace)
        return loads
