"""The access trail's group commit: concurrent looks share transactions, each committed before it is answered."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from timeline.application.access import AccessTrail
from timeline.application.ports import AccessRecord
from timeline.domain.roles import Action, Principal, Role
from timeline.store import open_store
from timeline.store.access_sql import SqlAccessStore, access_store

RITA = Principal("rita", Role.RM, "RM001", None)
LOOKS = 40


class CountingAccessStore(SqlAccessStore):
    """The real access tables, counting the transactions that append to them."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.groups: list[int] = []

    def append_accesses(self, records: Sequence[AccessRecord]) -> bool:
        stored = super().append_accesses(records)
        if stored:
            self.groups.append(len(records))
        return stored


@pytest.fixture
def stores(db_url) -> Iterator[tuple[CountingAccessStore, SqlAccessStore]]:
    """The trail's access tables, and a second connection to the same database to look from."""
    writing, reading = open_store(db_url), open_store(db_url, create=False)
    yield CountingAccessStore(writing), access_store(reading)
    writing.close()
    reading.close()


def test_concurrent_looks_are_appended_in_shared_transactions_each_committed_before_it_returns(stores):
    counting, other = stores
    trail = AccessTrail(counting)
    start = threading.Barrier(8)

    def look(i: int) -> AccessRecord:
        if i < 8:
            start.wait()
        record = trail.append(RITA, f"C{i}", Action.STATE, f"look {i}")
        [seen] = other.read_access(record.seq - 1, 1)
        assert seen == record, "committed, and seen from another connection, before append returned"
        return record

    with ThreadPoolExecutor(max_workers=8) as pool:
        records = list(pool.map(look, range(LOOKS)))
    assert sorted(r.seq for r in records) == list(range(1, LOOKS + 1))
    assert sorted(r.purpose for r in records) == sorted(f"look {i}" for i in range(LOOKS))
    assert sum(counting.groups) == LOOKS and len(counting.groups) < LOOKS, counting.groups
    assert AccessTrail(other).verify() is None


def test_two_trails_on_one_store_interleave_into_one_intact_chain(stores):
    counting, other = stores
    first, second = AccessTrail(counting), AccessTrail(other)
    for i in range(6):
        (first if i % 2 else second).append(RITA, f"C{i}", Action.STATE)
    assert [r.customer_id for r in AccessTrail(other).read()] == [f"C{i}" for i in range(6)]
    assert AccessTrail(other).verify() is None
