"""Reading outbox entries (core/history/records.py): an attempt carried in its delivery's state entry
and an attempt in an entry of its own both reach the batch."""

from __future__ import annotations

from core.history.records import batch_from_entries

DID = "dlv_01JDZ0000000000000000000_1"
STATE = {"k": "d", "i": DID, "m": "msg_01JDZ0000000000000000000", "e": "ep_1", "y": "order.paid",
         "s": "succeeded", "n": "1", "u": "1700000000000", "w": "", "c": "200", "x": "", "v": "3"}
RECORD = '{"number": 1, "outcome": "succeeded"}'


def test_an_attempt_riding_in_the_state_entry_is_read_as_both_records() -> None:
    batch, unreadable = batch_from_entries([("1-0", {**STATE, "an": "1", "at": "1700000000001", "ar": RECORD})])
    assert unreadable == []
    assert batch.deliveries[DID].status == "succeeded" and batch.deliveries[DID].version == 3
    attempt = batch.attempts[(DID, 1)]
    assert (attempt.endpoint_id, attempt.recorded_ms, attempt.record_json) == ("ep_1", 1700000000001, RECORD)


def test_an_attempt_entry_of_its_own_is_still_read_and_a_state_entry_alone_adds_no_attempt() -> None:
    alone = {"k": "a", "i": DID, "e": "ep_1", "n": "2", "t": "1700000000002", "r": RECORD}
    batch, unreadable = batch_from_entries([("1-0", STATE), ("2-0", alone)])
    assert unreadable == []
    assert list(batch.attempts) == [(DID, 2)]


def test_a_state_entry_with_a_malformed_attempt_is_unreadable_not_half_read() -> None:
    batch, unreadable = batch_from_entries([("1-0", {**STATE, "an": "x", "at": "1", "ar": RECORD})])
    assert unreadable == ["1-0"]
    assert not batch.deliveries and not batch.attempts
