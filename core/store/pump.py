"""The pump's side of the data layer: claim due deliveries under leases, complete them, reap lost ones.

Each call is one Lua script, so the invariants in core/keys.py hold across worker processes.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from typing import Any

from core import keys
from core.clock import now_ms
from core.ids import created_ms, message_id_of
from core.store.connection import Redis, load_script, typed


@dataclass(frozen=True, slots=True)
class ClaimedEndpoint:
    id: str
    url: str
    headers: dict[str, str]
    secrets: tuple[str, ...]  # every secret that signs now (current + those still in their grace)
    trace_propagation: bool
    updated_at_ms: int
    backoff_level: int
    interval_ms: float  # the pacing interval its slots were spaced by (60 s / effective rate)
    # Solo claim (claim.lua): no other worker can send to the endpoint before this time (ms), so the
    # claiming worker may space these sends itself until then; 0 when other workers' claims are live.
    solo_until_ms: int = 0
    # Header names whose values the owner marked write-only: the attempt record hides them.
    secret_headers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: str
    endpoint_id: str
    message_id: str
    attempt: int  # this attempt's number: also the claim's token
    slot_ms: int  # not to be sent before this time (pacing)
    budget_start_ms: int  # retries are allowed until budget_start + retry horizon
    trigger: str
    event_type: str
    payload_json: str
    message_created_ms: int
    trace: str


@dataclass(frozen=True, slots=True)
class Claim:
    endpoints: dict[str, ClaimedEndpoint]
    deliveries: list[ClaimedDelivery]
    next_active_ms: int | None  # the earliest time any endpoint may have work; None: nothing queued
    skipped: int  # endpoints looked at but held back by pace, pause or max_in_flight


@dataclass(frozen=True, slots=True)
class Completion:
    delivery_id: str
    attempt: int
    outcome: str  # succeeded | retry | failed | overloaded | gone | released
    due_ms: int = 0  # retry / overloaded / released: when it may go again
    status_code: int | None = None
    error: str = ""
    record: dict[str, Any] | None = None  # the attempt record; None for a release
    pause_reason: str = ""  # overloaded: "retry_after" (due_ms is the receiver's) or "backoff"
    started_ms: int = 0  # when the attempt was sent (0 for a release): tells one congestion event from the
    # next, and the endpoint's sends-per-second timeline counts it


@dataclass(frozen=True, slots=True)
class PermitAsk:
    """Permits for a run of sends to one fast endpoint (see PumpStore.send_permits)."""

    endpoint_id: str
    bound: int  # at most this many permits in any 1-s window: ceil(rate/60) + 1
    interval_ms: float  # the endpoint's pacing interval
    send_ids: list[str]  # "<did>.<attempt>", in send order


@dataclass(frozen=True, slots=True)
class PermitGrant:
    moments_ms: list[int]  # by Redis's clock, for the first len(moments_ms) sends of the ask
    retry_ms: int  # when the window has room for the rest; 0 when every send got one


# How long past a solo claim's last slot its worker may still send it without a permit (claim.lua).
# A worker that claims the endpoint later waits for it, once, when it joins; a solo send the worker
# could not get out by then takes a permit instead.
SOLO_GRACE_MS = 500


class PumpStore:
    def __init__(self, client: Redis, *, lease_seconds: float) -> None:
        self._redis = client
        self._claim = load_script(client, "claim")
        self._complete = load_script(client, "complete", preludes=("_lib", "_flow"))
        self._reap = load_script(client, "reap")
        self._lease = load_script(client, "lease")
        self._permit = load_script(client, "permit", preludes=())
        self.lease_ms = int(lease_seconds * 1000)
        # eid -> (updated_ms, the names marked secret then): claim.lua does not return the marks, so they
        # are read once per endpoint change, not once per claim.
        self._secret_headers: dict[str, tuple[int, frozenset[str]]] = {}

    async def claim(
        self, worker_id: str, *, horizon_ms: int, max_endpoints: int, max_deliveries: int, at_ms: int | None = None
    ) -> Claim:
        """Due deliveries with their send slots (claim.lua). `at_ms` stands for now (a virtual clock:
        tests/pacing_model.py)."""
        now = at_ms or now_ms()
        eps_raw, dl_raw, next_raw, skipped = await self._claim(
            args=[now, worker_id, self.lease_ms, horizon_ms, max_endpoints, max_deliveries, SOLO_GRACE_MS]
        )
        endpoints: dict[str, ClaimedEndpoint] = {}
        for i in range(0, len(eps_raw), 9):
            eid, url, headers, secrets_json, trace, updated, level, interval, solo_until = eps_raw[i : i + 9]
            endpoints[eid] = ClaimedEndpoint(
                id=eid,
                url=url,
                headers=json.loads(headers),
                secrets=_signing_secrets(secrets_json, now),
                trace_propagation=trace == "1",
                updated_at_ms=int(updated),
                backoff_level=int(level),
                interval_ms=float(interval),
                solo_until_ms=int(solo_until),
            )
        deliveries = []
        for i in range(0, len(dl_raw), 9):
            did, eid, attempt, slot, budget, trigger, event_type, payload, trace = dl_raw[i : i + 9]
            created = created_ms(did)  # a delivery id carries its message's id and creation time
            deliveries.append(ClaimedDelivery(
                id=did,
                endpoint_id=eid,
                message_id=message_id_of(did),
                attempt=int(attempt),
                slot_ms=int(slot),
                budget_start_ms=int(budget) if budget else created,
                trigger=trigger,
                event_type=event_type,
                payload_json=payload,
                message_created_ms=created,
                trace=trace,
            ))
        await self._mark_secret_headers(endpoints)
        next_ms = int(float(next_raw)) if next_raw else None
        return Claim(endpoints, deliveries, next_ms, int(skipped))

    async def _mark_secret_headers(self, endpoints: dict[str, ClaimedEndpoint]) -> None:
        stale = [e for e in endpoints.values() if self._secret_headers.get(e.id, (None,))[0] != e.updated_at_ms]
        if stale:
            pipe = self._redis.pipeline(transaction=False)
            for endpoint in stale:
                pipe.hget(keys.endpoint(endpoint.id), "secret_headers")
            for endpoint, raw in zip(stale, await pipe.execute(), strict=True):
                self._secret_headers[endpoint.id] = (endpoint.updated_at_ms, frozenset(json.loads(raw or "[]")))
        for eid, endpoint in endpoints.items():
            endpoints[eid] = replace(endpoint, secret_headers=self._secret_headers[eid][1])

    async def complete(self, completions: list[Completion], *, at_ms: int | None = None) -> dict[str, int]:
        """Apply a batch of results in one script; returns the endpoints it paused, with the pause's end.
        `at_ms` stands for now, as in claim."""
        if not completions:
            return {}
        # One JSON argument for the whole batch: redis-py writes each argument as its own buffer,
        # and thousands of small writes cost the worker more than encoding one document.
        batch = [
            [
                c.delivery_id,
                c.attempt,
                c.outcome,
                c.due_ms,
                "" if c.status_code is None else str(c.status_code),
                c.error,
                "" if c.record is None else json.dumps(c.record, separators=(",", ":")),
                c.pause_reason,
                c.started_ms,
            ]
            for c in completions
        ]
        args = [at_ms or now_ms(), json.dumps(batch, separators=(",", ":"))]
        _applied, paused = await self._complete(args=args)
        return {paused[i]: int(paused[i + 1]) for i in range(0, len(paused), 2)}

    async def send_permits(self, asks: list[PermitAsk]) -> tuple[int, list[PermitGrant]]:
        """Moments for runs of sends to fast endpoints, one script call for them all (permit.lua):
        Redis's clock now (ms), and per ask the moments of its first sends, spaced by the ask's
        interval with no 1-s window over its bound, and when to ask again for the rest (0: none left)."""
        args: list[object] = []
        for ask in asks:
            args += [ask.endpoint_id, ask.bound, ask.interval_ms, len(ask.send_ids), *ask.send_ids]
        flat = [int(x) for x in await self._permit(args=args)]
        grants: list[PermitGrant] = []
        at = 1
        for _ask in asks:
            k = flat[at]
            grants.append(PermitGrant(flat[at + 1: at + 1 + k], flat[at + 1 + k]))
            at += k + 2
        return flat[0], grants

    async def reap(self, limit: int = 200) -> list[str]:
        """Put deliveries whose lease expired back in their due sets; returns their ids."""
        return list(await self._reap(args=[now_ms(), limit]))

    async def acquire_run_lease(self, worker_id: str, ttl_ms: int) -> str | None:
        token = secrets.token_hex(8)
        ok = await self._redis.set(keys.pump_lease(worker_id), token, nx=True, px=ttl_ms)
        return token if ok else None

    async def refresh_run_lease(self, worker_id: str, token: str, ttl_ms: int) -> str | None:
        """Extend the run lease: None if this token no longer holds it, "handover" if the next run
        asked to take over, else "held"."""
        lease_keys = [keys.pump_lease(worker_id), keys.pump_handover(worker_id)]
        held = int(await self._lease(keys=lease_keys, args=[token, "refresh", ttl_ms]))
        return None if held == 0 else "handover" if held == 2 else "held"

    async def release_run_lease(self, worker_id: str, token: str) -> None:
        lease_keys = [keys.pump_lease(worker_id), keys.pump_handover(worker_id)]
        await self._lease(keys=lease_keys, args=[token, "release", 0])

    async def request_handover(self, worker_id: str) -> None:
        await self._redis.set(keys.pump_handover(worker_id), "1", px=5000)

    async def clear_handover(self, worker_id: str) -> None:
        await self._redis.delete(keys.pump_handover(worker_id))

    async def last_run_ms(self) -> int | None:
        """When any worker's pump last reported from a run (its heartbeat); None if none ever did."""
        raw = await typed(self._redis.hget(keys.PUMP_STATS, "last_run_ms"))
        return int(raw) if raw else None

    async def heartbeat(self, worker_id: str, stats: dict[str, Any]) -> None:
        now = now_ms()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(keys.WORKERS, {worker_id: now})
        pipe.hset(keys.PUMP_STATS, mapping={"last_run_ms": now, **{k: str(v) for k, v in stats.items()}})
        await pipe.execute()


def _signing_secrets(secrets_json: str, now: int) -> tuple[str, ...]:
    return tuple(value for value, _created, expires in json.loads(secrets_json) if expires is None or expires > now)
