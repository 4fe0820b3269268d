"""The event store port's contract: every backend (memory, SQLite, PostgreSQL) must pass every test here."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import PersistenceError

from tests.support.backends import every_backend
from timeline.application.ports import AppendBatch, NewEvent
from timeline.domain.errors import ConcurrencyConflict

pytestmark = every_backend


def new(
    customer: str, version: int, state: bytes = b"{}", event_id: uuid.UUID | None = None, kind: str = "visit.recorded"
) -> NewEvent:
    return NewEvent(customer, version, event_id or uuid.uuid4(), kind, state, f"h-{customer}-{version}")


def test_an_empty_store_has_no_head_and_no_customers(store):
    assert store.head_position() == 0
    assert store.read_log(0, 10) == []
    assert store.customer_ids() == []
    assert store.read_stream("C1") == []


def test_append_returns_increasing_positions_in_batch_order(store):
    positions = store.append(AppendBatch(events=[new("C1", 1), new("C2", 1), new("C1", 2)]))
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert store.head_position() == positions[-1]


def test_positions_keep_increasing_across_transactions(store):
    first = store.append(AppendBatch(events=[new("C1", 1)]))
    second = store.append(AppendBatch(events=[new("C1", 2)]))
    assert second[0] > first[0]


def test_read_log_pages_after_a_position_in_order(store):
    positions = store.append(AppendBatch(events=[new(f"C{i}", 1, state=f'{{"n":{i}}}'.encode()) for i in range(7)]))
    page1 = store.read_log(0, 3)
    page2 = store.read_log(page1[-1].position, 3)
    page3 = store.read_log(page2[-1].position, 3)
    assert [r.position for r in page1 + page2 + page3] == positions
    assert page3[-1].state == b'{"n":6}'
    assert store.read_log(positions[-1], 10) == []


def test_a_taken_version_conflicts_and_the_whole_batch_is_refused(store):
    store.append(AppendBatch(events=[new("C1", 1)]))
    with pytest.raises(ConcurrencyConflict):
        store.append(AppendBatch(events=[new("C2", 1), new("C1", 1)], new_keys={"C2": b"k"}))
    assert store.customer_ids() == ["C1"]
    assert store.wrapped_keys(["C2"]) == {}
    assert len(store.read_log(0, 10)) == 1


def test_a_taken_event_id_conflicts(store):
    event_id = uuid.uuid4()
    store.append(AppendBatch(events=[new("C1", 1, event_id=event_id)]))
    with pytest.raises(ConcurrencyConflict):
        store.append(AppendBatch(events=[new("C2", 1, event_id=event_id)]))
    assert store.customer_ids() == ["C1"]


def test_streams_read_back_in_version_order_with_their_bytes(store):
    store.append(AppendBatch(events=[new("C1", 1, b"a"), new("C2", 1, b"x"), new("C1", 2, b"b")]))
    streams = store.read_streams(["C1", "C2", "C3"])
    assert [(r.version, r.state) for r in streams["C1"]] == [(1, b"a"), (2, b"b")]
    assert [r.state for r in streams["C2"]] == [b"x"]
    assert streams["C3"] == []


def test_heads_follow_the_last_version_and_hash(store):
    store.append(AppendBatch(events=[new("C1", 1), new("C1", 2)]))
    store.append(AppendBatch(events=[new("C1", 3)]))
    assert store.heads(["C1", "C9"]) == {"C1": (3, "h-C1-3")}


def test_the_index_finds_events_by_id_with_their_hash(store):
    a, b = uuid.uuid4(), uuid.uuid4()
    store.append(AppendBatch(events=[new("C1", 1, event_id=a), new("C1", 2, event_id=b)]))
    found = store.lookup_events([a, uuid.uuid4()])
    assert list(found) == [a]
    assert (found[a].customer_id, found[a].version, found[a].hash) == ("C1", 1, "h-C1-1")
    assert [e.event_id for e in store.index_of("C1")] == [a, b]


def test_keys_are_stored_with_the_batch_and_destroyed_by_erasure(store):
    store.append(AppendBatch(events=[new("C1", 1)], new_keys={"C1": b"wrapped"}))
    assert store.wrapped_keys(["C1", "C2"]) == {"C1": b"wrapped"}
    store.append(AppendBatch(events=[new("C1", 2, kind="customer.erased")], destroy_keys=["C1"]))
    assert store.wrapped_keys(["C1"]) == {"C1": None}


def test_a_key_is_destroyed_only_with_a_stored_erasure(store):
    store.append(AppendBatch(events=[new("C1", 1)], new_keys={"C1": b"wrapped"}))
    with pytest.raises((PersistenceError, ConcurrencyConflict), match="a data key is destroyed only by an erasure"):
        store.append(AppendBatch(events=[new("C1", 2)], destroy_keys=["C1"]))
    assert store.wrapped_keys(["C1"]) == {"C1": b"wrapped"}
    assert store.read_stream("C1")[-1].version == 1, "nothing of the batch is stored"


def test_customer_ids_are_sorted_and_distinct(store):
    store.append(AppendBatch(events=[new("B", 1), new("A", 1), new("B", 2)]))
    assert store.customer_ids() == ["A", "B"]


def test_a_batch_whose_read_set_moved_is_refused_whole(store):
    """A verdict read C1 at version 1; another writer appended since: nothing of the batch is written."""
    store.append(AppendBatch(events=[new("C1", 1), new("C1", 2)]))
    with pytest.raises(ConcurrencyConflict, match="C1 moved from version 1 to 2"):
        store.append(AppendBatch(events=[new("C2", 1)], read_versions={"C1": 1}))
    assert store.customer_ids() == ["C1"]
    store.append(AppendBatch(events=[new("C2", 1)], read_versions={"C1": 2, "C9": 0}))
    assert store.customer_ids() == ["C1", "C2"]


def test_a_batch_that_writes_nothing_still_has_its_read_set_checked(store):
    store.append(AppendBatch(events=[new("C1", 1)]))
    with pytest.raises(ConcurrencyConflict):
        store.append(AppendBatch(read_versions={"C1": 0}))
    assert store.append(AppendBatch(read_versions={"C1": 1})) == []


def test_a_referral_count_read_by_a_batch_is_checked_beside_the_batchs_own_referrals(store):
    referral = NewEvent("A", 1, uuid.uuid4(), "referral.made", b"{}", "h-A-1", "R")
    store.append(AppendBatch(events=[referral]))
    with pytest.raises(ConcurrencyConflict, match="referral naming R"):
        store.append(AppendBatch(events=[new("B", 1)], read_referrals={"R": 0}))
    mine = NewEvent("B", 1, uuid.uuid4(), "referral.made", b"{}", "h-B-1", "R")
    store.append(AppendBatch(events=[mine], read_referrals={"R": 1}))
    assert [e.customer_id for e in store.referrals_naming(["R"])["R"]] == ["A", "B"]


def test_a_second_key_for_a_customer_conflicts_and_the_first_stands(store):
    store.append(AppendBatch(events=[new("C1", 1)], new_keys={"C1": b"first"}))
    with pytest.raises(ConcurrencyConflict):
        store.append(AppendBatch(events=[new("C1", 2)], new_keys={"C1": b"second"}))
    assert store.wrapped_keys(["C1"]) == {"C1": b"first"}
    assert store.read_stream("C1", after_version=0)[-1].version == 1


def test_any_key_is_a_present_one_before_a_destroyed_one(store):
    assert store.any_key() is None
    store.append(AppendBatch(events=[new("A", 1)], new_keys={"A": b"a"}))
    store.append(AppendBatch(events=[new("A", 2, kind="customer.erased")], destroy_keys=["A"]))
    assert store.any_key() == ("A", None)
    store.append(AppendBatch(events=[new("B", 1)], new_keys={"B": b"b"}))
    assert store.any_key() == ("B", b"b")


def test_metadata_is_recorded_once_and_the_first_value_stands(store):
    assert store.metadata("kek.check") is None
    assert store.record_metadata("kek.check", "one") == "one"
    assert store.record_metadata("kek.check", "two") == "one"
    assert store.metadata("kek.check") == "one"


def test_streams_and_indexes_of_many_customers_read_after_a_version(store):
    store.append(AppendBatch(events=[new("C1", 1), new("C1", 2), new("C2", 1)]))
    assert [r.version for r in store.read_stream("C1", after_version=1)] == [2]
    indexes = store.indexes_of(["C1", "C2", "C9"])
    assert [(e.customer_id, e.version) for e in indexes["C1"] + indexes["C2"]] == [("C1", 1), ("C1", 2), ("C2", 1)]
    assert indexes["C9"] == []


def test_referrals_are_found_through_the_referred_customer_and_none_dangle(store):
    referrals = [NewEvent(c, 1, uuid.uuid4(), "referral.made", b"{}", f"h-{c}", "R") for c in ("B", "A")]
    store.append(AppendBatch(events=referrals))
    assert [(e.customer_id, e.version) for e in store.referrals_naming(["R", "S"])["R"]] == [("A", 1), ("B", 1)]
    assert "S" not in store.referrals_naming(["S"])
    assert store.dangling_referrals(["R"]) == {}
    assert store.customer_ids() == ["A", "B", "R"]
