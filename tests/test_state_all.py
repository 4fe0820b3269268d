"""``state --all`` folded in worker processes answers exactly as one process does (POLICY §3 queries)."""

from __future__ import annotations

import datetime as dt
import gc

import pytest

from timeline.application.process import collector_paused
from timeline.application.states import StateReader
from timeline.synthetic.generate import generate_branch

END = dt.date(2026, 11, 1)
JUNE = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def reader(engine) -> StateReader:
    """A generated branch: what happened before June recorded on June 1st, the rest now."""
    events = list(generate_branch(40, 1, 3, END))
    early = [e for e in events if e["occurred_at"] < "2026-05-31"]
    late = [e for e in events if e["occurred_at"] >= "2026-05-31"]
    outcomes = list(engine.ingestor(clock=lambda: JUNE, batch_size=500).ingest(list(enumerate(early, 1))))
    outcomes += engine.ingestor(batch_size=500).ingest(list(enumerate(late, 1)))
    assert {o.status for o in outcomes} == {"accepted"}
    return StateReader(engine.store, engine.policy)


@pytest.mark.parametrize(
    ("as_of", "known_at"),
    [
        (None, None),
        (dt.datetime(2026, 6, 30, 16, tzinfo=dt.UTC), None),
        (dt.datetime(2026, 3, 31, 16, tzinfo=dt.UTC), JUNE),
        (dt.datetime(2026, 10, 31, 16, tzinfo=dt.UTC), JUNE),
    ],
)
def test_workers_answer_as_one_process_does_in_customer_order(reader, as_of, known_at):
    now = dt.datetime.now(dt.UTC)
    as_of, known_at = as_of or now, known_at or now
    alone = [s.to_json() for s in reader.all_states(as_of, known_at, workers=1)]
    shared = [s.to_json() for s in reader.all_states(as_of, known_at, workers=2)]
    assert shared == alone and len(alone) > 20
    assert [s["customer_id"] for s in shared] == sorted(s["customer_id"] for s in shared)


def test_workers_report_progress_up_to_the_head(reader):
    seen: list[tuple[int, int]] = []
    states = list(reader.all_states(workers=2, progress=lambda done, head: seen.append((done, head))))
    head = reader.store.head_position()
    assert states and seen[-1] == (head, head)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_pass_over_every_customer_runs_with_the_collector_paused_and_restores_it():
    """``collector_paused``: off inside, as it was after, even when the pass fails."""
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the pass failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
