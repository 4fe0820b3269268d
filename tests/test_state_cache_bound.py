"""The state reader's cache holds a bounded number of events, and what it lets go answers the same.

A service asks about customers for its whole life; kept without a bound, every stream ever asked would
stay decoded. The least recently asked leave first; asked again, a stream is read again, whole.
"""

from __future__ import annotations

import datetime as dt

import pytest

from timeline.application.states import StateReader
from timeline.application.stream_cache import StreamCache
from timeline.synthetic.generate import generate_branch

END = dt.date(2026, 11, 1)
JUNE = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
"""After every event and every recording: the answer "now" of the cached fold, at a fixed instant."""
ASKS = [(LATER, LATER), (dt.datetime(2026, 3, 31, 16, tzinfo=dt.UTC), JUNE)]


@pytest.fixture
def engine_with_branch(engine):
    """A generated branch: what happened before June recorded on June 1st, the rest now."""
    events = list(generate_branch(30, 1, 5, END))
    early = [e for e in events if e["occurred_at"] < "2026-05-31"]
    late = [e for e in events if e["occurred_at"] >= "2026-05-31"]
    outcomes = list(engine.ingestor(clock=lambda: JUNE, batch_size=500).ingest(list(enumerate(early, 1))))
    outcomes += engine.ingestor(batch_size=500).ingest(list(enumerate(late, 1)))
    assert {o.status for o in outcomes} == {"accepted"}
    return engine


def _bounded(engine, limit: int) -> StateReader:
    return StateReader(engine.store, engine.policy, StreamCache(limit))


def _answers(reader: StateReader) -> list[tuple[str, list]]:
    return [(c, [s.to_json() if s else None for s in states]) for c, states in reader.cached_states(*ASKS)]


def test_the_cache_never_holds_more_than_its_bound_of_events(engine_with_branch):
    reader = _bounded(engine_with_branch, 400)
    for customer_id in engine_with_branch.store.customer_ids():
        reader.state(customer_id)
        assert reader._cache.held <= 400 or len(reader._cache) == 1
    assert reader._cache.evicted > 0


def test_a_customer_let_go_answers_as_one_always_kept(engine_with_branch):
    unbounded, bounded = (
        StateReader(engine_with_branch.store, engine_with_branch.policy),
        _bounded(engine_with_branch, 300),
    )
    customers = engine_with_branch.store.customer_ids()
    for _ in range(2):  # the second round asks again streams the first let go
        for customer_id in customers:
            assert [s.to_json() for s in bounded.states(customer_id, *ASKS[:1])] == [
                s.to_json() for s in unbounded.states(customer_id, *ASKS[:1])
            ]


def test_every_customer_is_answered_past_the_bound_in_customer_order(engine_with_branch):
    whole = _answers(StateReader(engine_with_branch.store, engine_with_branch.policy))
    bounded = _bounded(engine_with_branch, 500)
    assert _answers(bounded) == whole
    assert len(whole) >= 30 and [c for c, _ in whole] == sorted(c for c, _ in whole)
    assert _answers(bounded) == whole  # again, from what it kept and what it reads again


def test_the_stream_being_answered_stays_however_long(engine_with_branch):
    reader = _bounded(engine_with_branch, 1)
    customer_id = engine_with_branch.store.customer_ids()[0]
    reader.state(customer_id)
    assert customer_id in reader._cache and reader._cache.held > 1


def test_events_stored_after_a_stream_was_let_go_are_seen(engine_with_branch):
    reader = _bounded(engine_with_branch, 200)
    first, *others = engine_with_branch.store.customer_ids()
    before = reader.state(first, LATER, LATER).to_json()
    for customer_id in others:
        reader.state(customer_id)
    assert first not in reader._cache
    outcomes = list(
        engine_with_branch.ingestor().ingest(
            [
                (
                    1,
                    {
                        "type": "visit.recorded",
                        "customer_id": first,
                        "occurred_at": "2026-11-20T02:00:00Z",
                        "data": {"channel": "branch", "purpose": "review"},
                    },
                )
            ]
        )
    )
    assert outcomes[0].status == "accepted", outcomes[0].error
    after = reader.state(first, LATER, LATER).to_json()
    assert after != before
    assert (
        after == StateReader(engine_with_branch.store, engine_with_branch.policy).state(first, LATER, LATER).to_json()
    )
