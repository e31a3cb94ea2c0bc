"""The benchmark's delivery history: rows shaped as the history writer stores them, made in Python
and written through the adapter (any backend), or made by PostgreSQL itself with INSERT ... SELECT
FROM generate_series (10,000,000 deliveries in minutes, where the write path takes most of an hour).

Both make the same population: ~100 endpoints, 20 event types, 88% succeeded, 8% failed, 2%
retrying, 2% pending, spread evenly over `days` UTC days ending now, one attempt per attempted
delivery (pending ones have none). Ids have the writer's format: dlv_<ms><16 random>_1, msg_<same>.
"""

from __future__ import annotations

import json
import random
import sys
import time

from core.history import AttemptRecord, DeliveryState, HistoryBatch
from core.history.postgres import DAY_MS, PostgresHistory
from core.history.postgres.admin import execute
from core.ids import created_ms, lower_bound

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ENDPOINTS = 100
EVENT_TYPES = 20
# status -> share in %, attempts, last code, ms from the attempt to the next one, version (state changes)
STATUSES: dict[str, tuple[int, int, int | None, int | None, int]] = {
    "succeeded": (88, 1, 200, None, 3),
    "failed": (8, 1, 410, None, 3),
    "retrying": (2, 1, 503, 60_000, 3),
    "pending": (2, 0, None, None, 1),
}
SENT_AFTER_MS = 50  # from creation to the (only) attempt's result
# An attempt record shaped like delivery/attempt.py's for a 200 "ok" answer (about 600 bytes of JSON).
RECORD = json.dumps({
    "number": 1, "trigger": "scheduled", "started_at": "2026-11-30T13:00:00.000Z", "duration_ms": 12.345,
    "request": {"url": "https://receiver.example.com/webhooks/hookpump", "headers": {
        "webhook-id": "msg_01m8pbat2persky3rmcnagkqq2", "webhook-timestamp": "1796046654",
        "webhook-signature": "[redacted]", "content-type": "application/json", "user-agent": "hookpump/0.1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
    "response": {"status": 200, "headers": {"content-type": "text/plain; charset=utf-8", "content-length": "2",
                                            "date": "Mon, 30 Nov 2026 13:00:00 GMT", "server": "nginx"},
                 "body": "ok", "body_truncated": False},
    "error": None, "outcome": "succeeded"}, separators=(",", ":"))


def endpoint_id(n: int) -> str:
    return f"ep_{n:026d}"


def event_type(n: int) -> str:
    return f"event.type_{n}"


def did_at(ms: int, rng: random.Random) -> str:
    return lower_bound("dlv", ms) + "".join(rng.choice(ALPHABET) for _ in range(16)) + "_1"


def delivery_state(did: str, eid: str, event: str, status: str) -> DeliveryState:
    _share, attempts, code, retry_after, version = STATUSES[status]
    ms = created_ms(did)
    updated = ms + SENT_AFTER_MS if attempts else ms
    return DeliveryState(did, "msg_" + did[4:30], eid, event, status, attempts, updated,
                         updated + retry_after if retry_after else None, code, None, version)


def batches(count: int, *, days: int = 1, seed: int = 7, mixed: bool = True) -> list[HistoryBatch]:
    """`count` deliveries, newest first, in batches of 10,000 for HistoryStore.write (`mixed`: the
    status mix above, else all succeeded)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    names = list(STATUSES) if mixed else ["succeeded"]
    weights = [STATUSES[s][0] for s in names]
    out, batch = [], HistoryBatch()
    for n in range(count):
        did = did_at(now - (n * days * DAY_MS) // max(count, 1), rng)
        state = delivery_state(did, endpoint_id(rng.randrange(ENDPOINTS)), event_type(rng.randrange(EVENT_TYPES)),
                               rng.choices(names, weights)[0])
        batch.add_delivery(state)
        if state.attempts:
            batch.add_attempt(AttemptRecord(did, state.endpoint_id, 1, state.updated_ms, RECORD))
        if len(batch) >= 10_000:
            out.append(batch)
            batch = HistoryBatch()
    if len(batch):
        out.append(batch)
    return out


# --- server-side fill (PostgreSQL) -----------------------------------------------------------------


def _base32(bits: str, width: int) -> str:
    """SQL for the Crockford base32 digits of the bigint expression `bits`, as core.ids writes them."""
    return " || ".join(f"substr('{ALPHABET}', (({bits} >> {5 * (width - 1 - i)}) & 31)::int + 1, 1)"
                       for i in range(width))


def _hex_bits(start: int, chars: int) -> str:
    return f"('x' || substr(h, {start}, {chars}))::bit({4 * chars})::bigint"


def _pick_status(roll: str) -> str:
    """SQL CASE choosing a status from the uniform 0..99 expression `roll`, with STATUSES' shares."""
    arms, upto = [], 0
    for status, (share, *_rest) in STATUSES.items():
        upto += share
        arms.append(f"WHEN {roll} < {upto} THEN '{status}'")
    return "CASE " + " ".join(arms) + " END"


def _shape(column: int) -> str:
    """SQL CASE giving STATUSES' `column` (1 attempts, 2 last code, 3 retry delay, 4 version) by status."""
    arms = [f"WHEN '{s}' THEN {'NULL' if v[column] is None else v[column]}" for s, v in STATUSES.items()]
    return "CASE status " + " ".join(arms) + " END"


# $1 first n, $2 last n, $3 count, $4 now (ms), $5 span (ms). Row n is created at now - n * span / count;
# md5(n) gives its 80 random id bits and its endpoint, event type and status, independently of each other.
# OFFSET 0 keeps each level a level of its own: inlined, md5 and the status CASE ran once per use.
FILL_DELIVERIES = f"""
INSERT INTO hp_delivery (created_ms, id, message_id, endpoint_id, event_type, status, attempts, updated_ms,
                         next_attempt_ms, last_code, last_error, version)
SELECT ms, 'dlv_' || core || '_1', 'msg_' || core, eid, event, status, attempts,
       ms + CASE WHEN attempts > 0 THEN {SENT_AFTER_MS} ELSE 0 END,
       ms + {SENT_AFTER_MS} + retry_after, code, NULL, version
FROM (SELECT ms, eid, event, status, core, {_shape(1)} AS attempts, {_shape(2)} AS code,
             {_shape(3)} AS retry_after, {_shape(4)} AS version
      FROM (SELECT ms, {_pick_status(f"({_hex_bits(29, 4)}) % 100")} AS status,
                   'ep_' || lpad((({_hex_bits(21, 4)}) % {ENDPOINTS})::text, 26, '0') AS eid,
                   'event.type_' || (({_hex_bits(25, 4)}) % {EVENT_TYPES})::text AS event,
                   {_base32("ms", 10)} || {_base32(_hex_bits(1, 15), 12)} || {_base32(_hex_bits(16, 5), 4)} AS core
            FROM (SELECT $4::bigint - (n * $5::bigint) / $3::bigint AS ms, md5(n::text) AS h
                  FROM generate_series($1::bigint, $2::bigint) AS n OFFSET 0) AS drawn OFFSET 0) AS picked) AS shaped
"""
# One attempt per attempted delivery, recorded when its state was: what the writer stores for them.
FILL_ATTEMPTS = """
INSERT INTO hp_attempt (delivery_created_ms, delivery_id, number, endpoint_id, recorded_ms, record, cut_reason)
SELECT created_ms, id, 1, endpoint_id, updated_ms, $3, NULL FROM hp_delivery
WHERE created_ms > $1 AND created_ms <= $2 AND attempts > 0
ON CONFLICT DO NOTHING
"""


async def fill_postgres(history: PostgresHistory, dsn: str, count: int, *, days: int,
                        chunk: int = 500_000, progress: bool = False) -> int:
    """Add `count` deliveries (and their attempts) spread over `days` days ending now; returns `now`.
    The day partitions are made by the adapter itself: one delivery per day goes through `write`."""
    now = int(time.time() * 1000)
    span = days * DAY_MS
    seed = HistoryBatch()
    rng = random.Random(1)
    for day in range(days + 1):
        ms = max(now - span, now - day * DAY_MS)
        state = delivery_state(did_at(ms, rng), endpoint_id(0), event_type(0), "succeeded")
        seed.add_delivery(state)
        seed.add_attempt(AttemptRecord(state.id, state.endpoint_id, 1, state.updated_ms, RECORD))
    await history.write(seed)
    first, last = 1, count - len(seed.deliveries)
    started = time.monotonic()
    for lo in range(first, last + 1, chunk):
        hi = min(lo + chunk - 1, last)
        await execute(dsn, FILL_DELIVERIES, lo, hi, last, now, span)
        newest, oldest = now - (lo * span) // last, now - (hi * span) // last
        await execute(dsn, FILL_ATTEMPTS, oldest - 1, newest, RECORD)
        if progress:
            print(f"  {hi:,} / {last:,} deliveries, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    for table in ("hp_delivery", "hp_attempt"):  # as autovacuum would soon: visibility map, statistics
        await execute(dsn, f"VACUUM (ANALYZE) {table}")
    return now
