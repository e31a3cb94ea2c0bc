"""Reading outbox entries (core/history/records.py): an attempt carried in its delivery's state entry
and an attempt in an entry of its own both reach the batch; a message's copies in each outbox
partition stand for that partition's deliveries, and the first for the message; entries of the
earlier message format are still read."""

from __future__ import annotations

from core.history.records import batch_from_entries
from core.keys import outbox_partition

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


MID = "msg_01JDZ0000000000000000000"
# As ingest.lua writes a message fanned out to ep_1, ep_2 (another partition) and ep_3 (ep_1's):
# the first copy, in ep_1's partition, carries the message; the other only ep_2's delivery.
FIRST_COPY = {"k": "m", "i": MID, "y": "order.paid", "c": "1700000000000", "j": "1,3", "e": "ep_1,ep_3",
              "p": '{"n": 1}', "t": "", "f": "3"}
OTHER_COPY = {"k": "m", "i": MID, "y": "order.paid", "c": "1700000000000", "j": "2", "e": "ep_2"}


def test_each_copy_of_a_message_stands_for_its_partitions_deliveries_and_the_first_for_the_message() -> None:
    batch, unreadable = batch_from_entries([("1-0", OTHER_COPY)])
    assert unreadable == [] and not batch.messages  # no payload here: the first copy brings the message
    assert list(batch.deliveries) == [f"dlv_{MID[4:]}_2"]
    assert (batch.deliveries[f"dlv_{MID[4:]}_2"].endpoint_id, batch.deliveries[f"dlv_{MID[4:]}_2"].status) == (
        "ep_2", "pending")

    batch, unreadable = batch_from_entries([("1-0", FIRST_COPY), ("2-0", OTHER_COPY)])
    assert unreadable == []
    assert {did: state.endpoint_id for did, state in batch.deliveries.items()} == {
        f"dlv_{MID[4:]}_1": "ep_1", f"dlv_{MID[4:]}_2": "ep_2", f"dlv_{MID[4:]}_3": "ep_3"}
    message = batch.messages[MID]
    assert (message.payload_json, message.created_ms) == ('{"n": 1}', 1700000000000)
    assert message.delivery_ids == ",".join(f"dlv_{MID[4:]}_{n}" for n in (1, 2, 3))  # the whole fan-out


def test_a_message_copy_whose_lists_disagree_is_unreadable() -> None:
    batch, unreadable = batch_from_entries([("1-0", {**OTHER_COPY, "e": "ep_2,ep_4"})])
    assert unreadable == ["1-0"] and not batch.deliveries


# The message format before per-partition lists: every copy whole, `q` naming its partition.
MESSAGE = {"k": "m", "i": MID, "y": "order.paid", "p": '{"n": 1}', "c": "1700000000000", "t": "",
           "d": f"dlv_{MID[4:]}_1,dlv_{MID[4:]}_2", "e": "ep_1,ep_2"}


def test_an_earlier_message_entry_stands_for_its_deliveries_pending_states_which_any_later_state_outranks() -> None:
    later = {**STATE, "i": f"dlv_{MID[4:]}_2", "e": "ep_2", "s": "delivering", "v": "1"}
    batch, unreadable = batch_from_entries([("1-0", MESSAGE), ("2-0", later)])
    assert unreadable == []
    first = batch.deliveries[f"dlv_{MID[4:]}_1"]
    assert (first.endpoint_id, first.status, first.attempts, first.version) == ("ep_1", "pending", 0, 0)
    assert (first.updated_ms, first.next_attempt_ms, first.message_id) == (1700000000000, 1700000000000, MID)
    assert batch.deliveries[f"dlv_{MID[4:]}_2"].status == "delivering"  # version 1 beats the message's 0
    assert list(batch.messages) == [MID]


def test_a_message_entry_from_before_endpoint_lists_adds_no_delivery_and_a_mismatched_one_is_unreadable() -> None:
    old = {k: v for k, v in MESSAGE.items() if k != "e"}
    batch, unreadable = batch_from_entries([("1-0", old), ("2-0", {**MESSAGE, "i": "msg_other", "e": "ep_1"})])
    assert unreadable == ["2-0"]
    assert list(batch.messages) == [MID] and not batch.deliveries


def test_an_earlier_message_entry_of_one_outbox_partition_stands_only_for_that_partitions_deliveries() -> None:
    # ep_1 and ep_2 end in different characters, so in different partitions (core/keys.py).
    assert outbox_partition("ep_1") != outbox_partition("ep_2")
    copy_of_ep_2 = {**MESSAGE, "q": str(outbox_partition("ep_2"))}
    batch, unreadable = batch_from_entries([("1-0", copy_of_ep_2)])
    assert unreadable == []
    assert list(batch.deliveries) == [f"dlv_{MID[4:]}_2"]
    assert batch.messages[MID].delivery_ids == MESSAGE["d"]  # the message row still lists both


def test_outbox_partitions_spread_ids_by_their_random_last_character() -> None:
    assert [outbox_partition(f"ep_{c}") for c in "0123456789abcdef"] == list(range(16))
    assert [outbox_partition(f"ep_{c}") for c in "ghjkmnpqrstvwxyz"] == list(range(16))
    assert outbox_partition("ep_") == 0 and outbox_partition("ep_I") == 0  # not of the alphabet: the first
