"""What the history store is given to keep: delivery states, attempt records and operator actions,
as the Lua scripts append them to the outbox stream, and a batch of them deduplicated.

A delivery state carries `version`, a counter the scripts bump on every change of the delivery, so
replaying an older state (a re-read batch, records out of order across writers) never moves a stored
delivery backwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from core.ids import created_ms, delivery_ids_of
from core.keys import outbox_partition

# Attempt records and last_error longer than this are stored cut (with the reason), never refused.
MAX_RECORD_CHARS = 64 * 1024
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DeliveryState:
    id: str
    message_id: str
    endpoint_id: str
    event_type: str
    status: str
    attempts: int
    updated_ms: int
    next_attempt_ms: int | None
    last_code: int | None
    last_error: str | None
    version: int

    @property
    def created_ms(self) -> int:
        """The partition key: a delivery id embeds its message's creation time."""
        return created_ms(self.id)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    delivery_id: str
    endpoint_id: str
    number: int
    recorded_ms: int  # when the result was written (the endpoint attempt log's order)
    record_json: str  # delivery/attempt.py's record, or reap.lua's "lost" record
    cut_reason: str | None = None  # set when the record was stored cut

    @property
    def delivery_created_ms(self) -> int:
        return created_ms(self.delivery_id)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    delivery_id: str
    seq: str  # the outbox entry id: unique, and ordered as the actions happened
    action_json: str

    @property
    def delivery_created_ms(self) -> int:
        return created_ms(self.delivery_id)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    event_type: str
    payload_json: str  # exactly as accepted and sent
    created_ms: int
    trace: str  # W3C traceparent of the ingest request, or ""
    delivery_ids: str  # comma list, in fan-out order

    @property
    def partition_ms(self) -> int:
        """The partition key: the creation time the message id embeds (its deliveries' too)."""
        return created_ms(self.id)


@dataclass(slots=True)
class HistoryBatch:
    """Records to write together. `add_*` keeps one row per key: the newest state of a delivery (by
    version), the last-written record of an attempt number, each action once."""

    deliveries: dict[str, DeliveryState] = field(default_factory=dict)
    attempts: dict[tuple[str, int], AttemptRecord] = field(default_factory=dict)
    actions: dict[tuple[str, str], ActionRecord] = field(default_factory=dict)
    messages: dict[str, MessageRecord] = field(default_factory=dict)

    def add_message(self, message: MessageRecord) -> None:
        self.messages[message.id] = message

    def add_delivery(self, state: DeliveryState) -> None:
        known = self.deliveries.get(state.id)
        if known is None or known.version < state.version:
            self.deliveries[state.id] = state

    def add_attempt(self, attempt: AttemptRecord) -> None:
        key = (attempt.delivery_id, attempt.number)
        known = self.attempts.get(key)
        if known is None or known.recorded_ms <= attempt.recorded_ms:
            self.attempts[key] = attempt

    def add_action(self, action: ActionRecord) -> None:
        # seq comes from the entry id, unique within one outbox stream: with the delivery it is unique.
        self.actions[(action.delivery_id, action.seq)] = action

    def __len__(self) -> int:
        return len(self.deliveries) + len(self.attempts) + len(self.actions) + len(self.messages)


def cut_delivery(state: DeliveryState, reason: str) -> DeliveryState:
    error = (state.last_error or "")[:MAX_ERROR_CHARS]
    return replace(state, last_error=_printable(error) + f" [stored cut: {reason}]"[:MAX_ERROR_CHARS])


def cut_attempt(attempt: AttemptRecord, reason: str) -> AttemptRecord:
    """The attempt without its request/response details: what a refused record is stored as."""
    try:
        original = json.loads(attempt.record_json)
        kept = {k: original.get(k) for k in ("number", "trigger", "started_at", "duration_ms", "outcome")}
    except (ValueError, AttributeError):
        kept = {"number": attempt.number}
    kept.update({"request": None, "response": None,
                 "error": {"kind": "record_cut", "message": f"the attempt record was stored cut: {reason}"}})
    return replace(attempt, record_json=json.dumps(kept), cut_reason=reason[:MAX_ERROR_CHARS])


def cut_action(action: ActionRecord, reason: str) -> ActionRecord:
    return replace(action, action_json=json.dumps({"note": f"action record stored cut: {reason[:500]}"}))


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def batch_from_entries(entries: list[tuple[str, dict[str, str]]]) -> tuple[HistoryBatch, list[str]]:
    """The outbox entries (see core/keys.py, hp:log:<p>) as one deduplicated batch, and the ids of
    entries that could not be read at all (kept out of the batch, acknowledged with it)."""
    batch = HistoryBatch()
    unreadable: list[str] = []
    for entry_id, f in entries:
        try:
            kind = f["k"]
            if kind == "d":
                state = _delivery(f)
                if "ar" in f:  # the attempt that led to this state, in the same entry
                    batch.add_attempt(_attempt({"i": f["i"], "e": f["e"], "n": f["an"], "t": f["at"], "r": f["ar"]}))
                batch.add_delivery(state)
            elif kind == "a":
                batch.add_attempt(_attempt(f))
            elif kind == "m":
                message, first_states = _message(f)
                if message is not None:
                    batch.add_message(message)
                for state in first_states:
                    batch.add_delivery(state)
            elif kind == "x":
                ms, _, n = entry_id.partition("-")
                batch.add_action(ActionRecord(f["i"], f"{int(ms):013d}-{int(n or 0):06d}", f["a"]))
            else:
                unreadable.append(entry_id)
        except (KeyError, ValueError):
            unreadable.append(entry_id)
    return batch, unreadable


def _message(f: dict[str, str]) -> tuple[MessageRecord | None, list[DeliveryState]]:
    """A message entry (see log_message in _lib.lua): the message, if this copy stands for it, and
    the pending state (version 0) of each delivery it lists."""
    if "j" not in f:
        return _message_before_partition_lists(f)
    mid, event_type, created = f["i"], f["y"], int(float(f["c"]))
    numbers = f["j"].split(",") if f["j"] else []
    eids = f["e"].split(",") if f["e"] else []
    if len(numbers) != len(eids):
        raise ValueError(f"message {mid}: {len(numbers)} deliveries but {len(eids)} endpoints")
    states = [_pending(f"dlv_{mid[4:]}_{int(n)}", mid, eid, event_type, created)
              for n, eid in zip(numbers, eids, strict=True)]
    if "p" not in f:
        return None, states
    delivery_ids = ",".join(delivery_ids_of(mid, int(f["f"])))
    return MessageRecord(mid, event_type, f["p"], created, f.get("t", ""), delivery_ids), states


def _message_before_partition_lists(f: dict[str, str]) -> tuple[MessageRecord, list[DeliveryState]]:
    """A message entry of an earlier version: every copy carries the whole message, `d` and `e` list
    all its deliveries and their endpoints, and `q` says which outbox partition's deliveries this
    copy stands for. An entry from before `e` existed stands for none: its deliveries came with
    state records of their own."""
    message = MessageRecord(f["i"], f["y"], f["p"], int(float(f["c"])), f.get("t", ""), f.get("d", ""))
    endpoint_ids, partition = f.get("e"), f.get("q")
    if not endpoint_ids or not message.delivery_ids:
        return message, []
    dids, eids = message.delivery_ids.split(","), endpoint_ids.split(",")
    if len(dids) != len(eids):
        raise ValueError(f"message {message.id}: {len(dids)} deliveries but {len(eids)} endpoints")
    return message, [_pending(did, message.id, eid, message.event_type, message.created_ms)
                     for did, eid in zip(dids, eids, strict=True)
                     if partition is None or outbox_partition(eid) == int(partition)]


def _pending(did: str, mid: str, eid: str, event_type: str, created: int) -> DeliveryState:
    return DeliveryState(id=did, message_id=mid, endpoint_id=eid, event_type=event_type, status="pending",
                         attempts=0, updated_ms=created, next_attempt_ms=created, last_code=None,
                         last_error=None, version=0)


def _delivery(f: dict[str, str]) -> DeliveryState:
    state = DeliveryState(
        id=f["i"], message_id=f["m"], endpoint_id=f["e"], event_type=f["y"], status=f["s"],
        attempts=int(f["n"]), updated_ms=int(float(f["u"])),
        next_attempt_ms=int(float(f["w"])) if f.get("w") else None,
        last_code=int(f["c"]) if f.get("c") else None, last_error=f.get("x") or None, version=int(f["v"]),
    )
    if state.last_error is not None and len(state.last_error) > MAX_ERROR_CHARS:
        return cut_delivery(state, f"last_error longer than {MAX_ERROR_CHARS} characters")
    return state


def _attempt(f: dict[str, str]) -> AttemptRecord:
    attempt = AttemptRecord(f["i"], f["e"], int(f["n"]), int(float(f["t"])), f["r"])
    if len(attempt.record_json) > MAX_RECORD_CHARS:
        return cut_attempt(attempt, f"record larger than {MAX_RECORD_CHARS} characters")
    return attempt
