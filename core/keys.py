"""Every Redis key hookpump writes, its type, its TTL, and the invariants between keys.

The Lua scripts in `core/store/lua/` build the same names (they cannot import Python), so a change
here is a change there: each script lists the patterns it touches in its header. All keys share the
`hp:` prefix. hookpump does not support Redis Cluster (scripts touch keys they derive; arq has the
same limit); use a single primary, with Sentinel for failover.

Endpoints
  hp:ep:{eid}                 HASH  endpoint config: url, rate, min_rate, max_in_flight, event_types (JSON or ""),
                                    headers (JSON), secret_headers (JSON list of lower-case names whose
                                    values are write-only), secrets (JSON list), description, enabled ("1"/"0"),
                                    disabled_reason, trace, created_ms, updated_ms, deleted ("1" once deleted)
                                    no TTL; a deleted endpoint's hash stays until its queued deliveries are
                                    cancelled by the pump, then is removed.
  hp:ep:{eid}:flow            HASH  pacing state owned by the pump: tat (ms, GCRA theoretical arrival time),
                                    paused_until (ms), pause_reason, paused_at, backoff_level (consecutive
                                    whole-endpoint backoffs), and the adaptive loop's state (see
                                    store/lua/_flow.lua): eff_rate (the pace now, per minute), est (what
                                    the receiver accepts), w_max (the pace last refused), s0, the
                                    window (win_*), the cut (cut_*, chain_from, noise_n), the probe
                                    (probe_ms, probe_rate, gain, next_probe_ms, ramp, confirm, recover,
                                    next_recover_ms, held, held_ms), trim_ms, last_ok_ms, last_start_ms,
                                    streak_fails, streak_rate, streak_wmax, streak_est; who may pace its sends alone
                                    (store/lua/claim.lua): cw (the last worker to claim), cw_until, ow_until
                                    (lease expiries of its and the other workers' claims), solo_until. no TTL
  hp:ep:{eid}:pauses          LIST  JSON {start_ms, end_ms, reason, status_code}: the pace's cuts
                                    ("congestion") and pauses ("retry_after", "backoff"), newest first, the
                                    last 100
  hp:ep:{eid}:permits         ZSET  send id (did.attempt) -> ms by Redis's clock: a fast endpoint's sends in
                                    the last second (store/lua/permit.lua), shared by every worker. PX 2 s
  hp:eps                      ZSET  eid -> created_ms; every live (not deleted) endpoint, for listing
  hp:evt:{event_type}         SET   eids of *enabled* endpoints whose filter names event_type
  hp:evt-all                  SET   eids of *enabled* endpoints with no filter (they get every event)

Messages and deliveries
  hp:msg:{mid}                HASH  event_type, fanout (how many deliveries ingest made: dlv_{core}_1 ..
                                    dlv_{core}_{fanout}), remaining (deliveries of it still in Redis), trace
                                    (W3C traceparent of the ingest request; absent when none). Its creation
                                    time is its id's. No TTL; removed with the last of its deliveries Redis
                                    forgets (the history store keeps the message: ingest appended it to
                                    hp:log), brought back by restore.lua for a retry. A message with no
                                    delivery expires after `retention`, with its payload.
  hp:msg:{mid}:payload        STRING the payload (compact JSON, exactly the bytes signed and sent), beside
                                    its hash and removed with it: inside the hash it would push the hash out
                                    of the listpack encoding (values up to 64 bytes) and cost ~400 B more.
  hp:dlv:{did}                HASH  eid, status, attempts (absent: 0), updated_ms, due_ms (absent once
                                    terminal), last_code, last_error (absent until there is one),
                                    v (history version, see hp:log), budget_ms (when the retry budget
                                    started, set by an operator's retry; absent: at creation), trigger
                                    ("manual" from an operator's retry until that attempt is recorded;
                                    absent: "scheduled"), worker and lease_ms (set by a claim).
                                    Nothing the ids or the message say is stored again: did is
                                    dlv_{core}_{n}, the n-th delivery of message msg_{core}, and both ids
                                    carry the creation time (core/ids.py); the event type is the message's.
                                    Every value stays short so the hash keeps Redis's compact listpack
                                    encoding (ziplist on Redis 6.2; values up to hash-max-listpack-value,
                                    default 64 bytes; a longer last_error only costs that delivery more,
                                    ~400 B, as a hashtable). Only while live: once a terminal state is
                                    committed to the history store, forget.lua deletes it (restore.lua
                                    brings it back from the history for a manual retry).
  Attempt records and operator actions on deliveries are not kept in Redis: they go through hp:log
  to the history store (core/history), which also answers the delivery log.

Pump state (see scheduler/)
  hp:ep:{eid}:due             ZSET  did -> due_ms. Holds exactly the endpoint's pending and retrying deliveries.
  hp:ep:{eid}:inflight        ZSET  did -> lease_expiry_ms. Exactly the endpoint's delivering deliveries.
  hp:leases                   ZSET  did -> lease_expiry_ms, across all endpoints; the reaper's index.
  hp:active                   ZSET  eid -> the earliest time the endpoint may have something to send
                                    (max of its due head, its pacing slot, its pause end). An endpoint
                                    with a non-empty due set is in here (unless disabled); the pump only
                                    ever reads the part scored <= now, so a tick costs O(active endpoints).
  hp:wake                     pub/sub channel; ingest and manual retry publish so idle pumps wake at once
  hp:pump:lease:{worker_id}   STRING run token, PX ~ 2 s refreshed every loop: one pump run per worker
  hp:pump:handover:{worker_id} STRING set by a waiting run to ask the current run to hand over, PX 5 s
  hp:workers                  ZSET  worker_id -> last heartbeat ms (alive if within 3 pump intervals)
  hp:pump:stats               HASH  last_run_ms, last_window_start_ms, windows, sent_total ...

Monitoring (there is no per-delivery index: the delivery log by filter is the history store's, and
"oldest pending" is read from the due sets' heads, see store/lua/oldest_due.lua)
  hp:backlog                  ZSET  eid -> queued (pending + retrying) deliveries, for "largest backlogs";
                                    its members scored > 0 are the endpoints oldest_due.lua visits
  hp:ep:{eid}:actions         LIST  JSON operator actions on the endpoint, newest 100
  hp:bulk:{job_id}            HASH  a bulk retry's filter and progress. TTL 1 day

History outbox (core/history): what the history store has not yet committed
  hp:log:<p>                  STREAM records appended by the scripts in the same step as each change,
                                    in the stream of the endpoint's partition p (outbox_partition):
                                    k=d delivery state (i did, m mid, e eid, y event_type, s status,
                                    n attempts, u updated_ms, w due_ms, c last_code, x last_error,
                                    v version = hp:dlv:{did} field v, counted up on every change;
                                    with an, at, ar when the script also recorded the attempt that led
                                    to this state: its number, recorded_ms and record JSON, so a
                                    completed attempt and its delivery's new state are one entry);
                                    k=m message (i mid, y event_type, c created_ms, j the numbers n of
                                    its deliveries dlv_{core}_{n} whose endpoints are in this partition,
                                    e those endpoints, in the same order): their first state (pending,
                                    version 0), which ingest records in no entry of its own; one copy
                                    per partition its endpoints are in. The first copy (the first
                                    endpoint's partition; the message's own if it has none) also has
                                    p payload, t trace and f fan-out, and stands for the message.
                                    (Earlier versions wrote every copy whole, with d all delivery
                                    ids, e all endpoints and q its partition: still read.)
                                    k=a attempt (i did, e eid, n number, t recorded_ms, r record JSON)
                                    when no state record of the same script carries it (a late result);
                                    k=x operator action (i did, a action JSON).
                                    Consumer group "history"; entries are XACKed and XDELed once
                                    committed, so XLEN is the backlog. No TTL, never trimmed.
                                    The claim (delivering) is not recorded: it lasts one request.
  hp:log                      STREAM the single outbox stream of earlier versions, same records; drained
                                    like the others

Counters (monitoring; kept up to date by the scripts that change state, never by scanning)
  hp:ep:{eid}:count           HASH  status -> number of deliveries in that status (terminal ones count
                                    while the history store keeps them: its retention sweep lowers them)
  hp:count                    HASH  status -> number, across endpoints
  hp:ep:{eid}:m:{minute}      HASH  succeeded/failed/retrying/overloaded counts in that minute. TTL 2 h
  hp:ep:{eid}:sent:{minute}   HASH  unix second -> requests sent to the endpoint that started in that second
                                    (complete.lua, by the attempt's started_ms); minute = second // 60.
                                    TTL 20 min (the timeline route reads at most 15 min back)
  hp:ep:{eid}:pauses          (under Endpoints above) read by the timeline route

Console (service/console/)
  hp:ui:sess:{sha256 hex}     HASH  a console session: key_id, key_digest (sha256 of the bootstrap key, for
                                    it alone), csrf token, created_ms. The cookie holds the token whose
                                    digest names the key. TTL 12 h (console.session.SESSION_SECONDS)

API keys and idempotency
  hp:authfail:{address}       STRING authentications with a wrong key (JSON API and console sign-in) from that
                                    client address (IPv6: its /64) in the current window; each attempt not
                                    answered from the key cache counts first and a valid key takes its count
                                    back (service/guessing.py). TTL the window (5 min)
  hp:key:{sha256 hex}         HASH  id, name, scopes (comma list), created_ms. no TTL
  hp:keyid:{kid}              STRING sha256 hex of that key (to delete by id). no TTL
  hp:keys                     ZSET  kid -> created_ms, for listing
  hp:idem:{principal}:{key}   STRING JSON {"hash": body sha256, "status": int, "body": response}.
                                    TTL `idempotency_ttl`

Keys older versions wrote, no longer read or written (safe to delete after an upgrade)
  hp:idx:dlv:st:{status}, hp:idx:dlv:ep:{eid}:st:{status}   the live-status indexes ("oldest pending" now
                                    comes from the due sets' heads)
"""

from __future__ import annotations

from core.ids import ID_ALPHABET

PREFIX = "hp:"


def endpoint(eid: str) -> str:
    return f"hp:ep:{eid}"


def endpoint_flow(eid: str) -> str:
    return f"hp:ep:{eid}:flow"


ENDPOINTS = "hp:eps"
EVENT_ALL = "hp:evt-all"


def event_type(name: str) -> str:
    return f"hp:evt:{name}"


def message(mid: str) -> str:
    return f"hp:msg:{mid}"


def message_payload(mid: str) -> str:
    return f"hp:msg:{mid}:payload"


def delivery(did: str) -> str:
    return f"hp:dlv:{did}"


def due(eid: str) -> str:
    return f"hp:ep:{eid}:due"


def inflight(eid: str) -> str:
    return f"hp:ep:{eid}:inflight"


LEASES = "hp:leases"
BACKLOG = "hp:backlog"
ACTIVE = "hp:active"
WAKE_CHANNEL = "hp:wake"
WORKERS = "hp:workers"
PUMP_STATS = "hp:pump:stats"


def pump_lease(worker_id: str) -> str:
    return f"hp:pump:lease:{worker_id}"


def pump_handover(worker_id: str) -> str:
    return f"hp:pump:handover:{worker_id}"


def endpoint_actions(eid: str) -> str:
    return f"hp:ep:{eid}:actions"


def bulk_retry(job_id: str) -> str:
    return f"hp:bulk:{job_id}"


def endpoint_counts(eid: str) -> str:
    return f"hp:ep:{eid}:count"


COUNTS = "hp:count"
# The history outbox: OUTBOX_PARTITIONS streams, hp:log:<p>. Every record of an endpoint's deliveries
# goes to the stream of its endpoint's partition (_lib.lua's log_key computes the same), so a Redis
# Cluster keyspace can give an endpoint's live keys and its outbox stream one hash tag
# (../shared/notes/scale-out.md). hp:log is the one stream of earlier versions, still drained.
OUTBOX_PARTITIONS = 16
LEGACY_OUTBOX = "hp:log"


def outbox_partition(ident: str) -> int:
    """The outbox partition of an endpoint (or of a message with no delivery): by the id's last
    character, which is random (core/ids.py)."""
    return max(0, ID_ALPHABET.find(ident[-1:])) % OUTBOX_PARTITIONS


def outbox(partition: int) -> str:
    return f"hp:log:{partition}"


OUTBOX_STREAMS = (*(outbox(p) for p in range(OUTBOX_PARTITIONS)), LEGACY_OUTBOX)


def endpoint_minute(eid: str, minute: int) -> str:
    return f"hp:ep:{eid}:m:{minute}"


def endpoint_sent(eid: str, minute: int) -> str:
    return f"hp:ep:{eid}:sent:{minute}"


def endpoint_pauses(eid: str) -> str:
    return f"hp:ep:{eid}:pauses"


def console_session(digest: str) -> str:
    return f"hp:ui:sess:{digest}"


def auth_failures(address: str) -> str:
    return f"hp:authfail:{address}"


def api_key(digest: str) -> str:
    return f"hp:key:{digest}"


def api_key_id(kid: str) -> str:
    return f"hp:keyid:{kid}"


API_KEYS = "hp:keys"


def idempotency(principal: str, key: str) -> str:
    return f"hp:idem:{principal}:{key}"
