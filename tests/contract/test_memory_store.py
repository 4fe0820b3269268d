"""What the in-memory store adds to the contract: it is one process's, and safe to share between threads."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from timeline.application.ports import AppendBatch, NewEvent
from timeline.domain.errors import ConcurrencyConflict
from timeline.store.memory import MemoryEventStore


def test_it_cannot_be_opened_by_another_process():
    store = MemoryEventStore()
    assert store.opener() is None
    assert store.default_key_file() is None


def test_threads_racing_for_the_same_versions_store_each_version_once():
    store = MemoryEventStore()

    def writer(n: int) -> int:
        won = 0
        for version in range(1, 201):
            event = NewEvent("C1", version, uuid.uuid4(), "visit.recorded", b"{}", f"h-{n}-{version}")
            try:
                store.append(AppendBatch(events=[event], read_versions={"C0": 0}))
                won += 1
            except ConcurrencyConflict:
                pass
        return won

    with ThreadPoolExecutor(max_workers=4) as pool:
        wins = list(pool.map(writer, range(4)))
    assert sum(wins) == 200
    assert [r.version for r in store.read_stream("C1")] == list(range(1, 201))
    assert [r.position for r in store.read_log(0, 1000)] == list(range(1, 201))
