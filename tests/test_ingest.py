"""POLICY §1–§2 at ingestion: each event is accepted, a duplicate, or rejected whole."""

from __future__ import annotations

import copy

import pytest

from tests.factories import deposit, registered, visit
from tests.support.backends import every_backend
from timeline.application.keyring import load_history

pytestmark = every_backend  # the ingest rules, on every store


def ingest(engine, clock, *events, atomic=False):
    return list(engine.ingestor(clock=clock).ingest(list(enumerate(events, 1)), atomic=atomic))


def statuses(outcomes):
    return [o.status for o in outcomes]


def test_accepted_events_are_stored_once_in_stream_order(engine, clock):
    out = ingest(engine, clock, registered(), deposit(), visit())
    assert statuses(out) == ["accepted"] * 3
    history = load_history(engine.store, engine.keyring(), "C1")
    assert [e.type for e in history] == ["customer.registered", "deposit.made", "visit.recorded"]
    assert [e.position for e in history] == [o.position for o in out]
    assert all(e.recorded_at == clock() for e in history)


def test_same_event_id_same_content_is_a_duplicate_stored_once(engine, clock):
    reg = registered()
    dep = deposit()
    ingest(engine, clock, reg, dep)
    again = copy.deepcopy(dep)
    again["occurred_at"] = "2025-01-02T01:00:00Z"  # the same instant as +08:00 09:00
    again["data"]["amount"] = 1000  # the same amount as "1000.00"
    assert statuses(ingest(engine, clock, again)) == ["duplicate"]
    assert len(engine.store.read_log(0, 100)) == 2


def test_same_event_id_different_content_is_rejected(engine, clock):
    dep = deposit()
    ingest(engine, clock, registered(), dep)
    changed = {**dep, "data": {**dep["data"], "amount": "1000.01"}}
    [outcome] = ingest(engine, clock, changed)
    assert outcome.status == "rejected"
    assert "already used for different content" in outcome.error


def test_a_duplicate_within_one_batch_is_stored_once(engine, clock):
    reg = registered()
    assert statuses(ingest(engine, clock, reg, copy.deepcopy(reg))) == ["accepted", "duplicate"]


def test_an_absent_event_id_is_assigned_by_the_engine(engine, clock):
    dep = deposit()
    del dep["event_id"]
    out = ingest(engine, clock, registered(), dep)
    assert out[1].status == "accepted" and out[1].event_id is not None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update(type="deposit.maybe"), "unknown event type"),
        (lambda e: e["data"].update(colour="red"), "data.colour: unknown field"),
        (lambda e: e["data"].pop("account_id"), "data.account_id: Field required"),
        (lambda e: e.update(occurred_at="2025-01-02T09:00:00"), "naive timestamps are rejected"),
        (lambda e: e["data"].update(amount="0"), "data.amount"),
        (lambda e: e["data"].update(amount="-5.00"), "data.amount"),
        (lambda e: e["data"].update(amount="12.345"), "more than 2 decimal places"),
        (lambda e: e["data"].update(amount="1e3"), "not a plain decimal amount"),
        (lambda e: e["data"].update(amount=12.5), "never a float"),
        (lambda e: e["data"].update(product="gold"), "data.product"),
        (lambda e: e["data"].update(product="time"), "term_months is required"),
        (lambda e: e["data"].update(account_id="A" * 65), "data.account_id"),
        (lambda e: e.update(customer_id="C 1"), "customer_id"),
        (lambda e: e.update(recorded_at="2025-01-01T00:00:00Z"), "recorded_at is set by the engine"),
        (lambda e: e.update(occurred_at="2026-01-01T00:05:01Z"), "after the time of recording"),
        (lambda e: e.update(customer_id="C2"), "customer C2 is not registered"),
        (lambda e: e.update(occurred_at="2024-12-31T09:00:00+08:00"), "before the customer's registration"),
    ],
)
def test_schema_and_identity_violations_are_rejected_and_change_nothing(engine, clock, mutate, reason):
    ingest(engine, clock, registered())
    bad = deposit()
    mutate(bad)
    [outcome] = ingest(engine, clock, bad)
    assert outcome.status == "rejected"
    assert reason in outcome.error
    assert len(engine.store.read_log(0, 100)) == 1


def test_five_minutes_ahead_of_recording_is_still_accepted(engine, clock):
    ingest(engine, clock, registered())
    assert statuses(ingest(engine, clock, deposit(at="2026-01-01T00:05:00Z"))) == ["accepted"]


def test_a_second_registration_is_rejected(engine, clock):
    ingest(engine, clock, registered())
    [outcome] = ingest(engine, clock, registered(at="2025-02-01T09:00:00+08:00"))
    assert outcome.error == "customer C1 is already registered"


def test_referral_qualified_from_outside_is_rejected(engine, clock):
    ingest(engine, clock, registered())
    from tests.factories import event

    q = event(
        "referral.qualified",
        "C1",
        "2025-02-01T09:00:00Z",
        {"referred_customer_id": "C2", "referral_event_id": "0b6f6d3e-0000-4000-8000-000000000001"},
    )
    [outcome] = ingest(engine, clock, q)
    assert outcome.error == "referral.qualified is written by the engine only"


def test_referring_oneself_is_rejected(engine, clock):
    from tests.factories import event

    ingest(engine, clock, registered())
    self_referral = event("referral.made", "C1", "2025-02-01T09:00:00Z", {"referred_customer_id": "C1"})
    [outcome] = ingest(engine, clock, self_referral)
    assert outcome.error == "a customer cannot refer themself"


def test_atomic_input_with_a_rejection_stores_nothing(engine, clock):
    out = ingest(engine, clock, registered(), deposit(), deposit(amount="1e3"), atomic=True)
    assert statuses(out) == ["rejected"] * 3
    assert "atomic" in out[0].error
    assert engine.store.read_log(0, 10) == []


def test_atomic_input_without_rejections_is_stored_whole(engine, clock):
    out = ingest(engine, clock, registered(), deposit(), visit(), atomic=True)
    assert statuses(out) == ["accepted"] * 3
    assert len(engine.store.read_log(0, 10)) == 3


def test_many_events_share_one_transaction_per_batch(engine, clock):
    events = [registered()] + [visit(at=f"2025-02-01T09:{m:02d}:00+08:00") for m in range(50)]
    out = list(engine.ingestor(clock=clock, batch_size=20).ingest(list(enumerate(events, 1))))
    assert statuses(out) == ["accepted"] * 51
    history = load_history(engine.store, engine.keyring(), "C1")
    assert [e.version for e in history] == list(range(1, 52))
    assert len({e.recorded_at for e in history}) == 1


def test_a_duplicate_of_an_event_in_the_batch_still_in_flight_is_stored_once(engine, clock):
    dep = deposit()
    events = [registered(), dep, copy.deepcopy(dep), visit(), copy.deepcopy(dep), visit()]
    out = list(engine.ingestor(clock=clock, batch_size=2).ingest(list(enumerate(events, 1))))
    assert statuses(out) == ["accepted", "accepted", "duplicate", "accepted", "duplicate", "accepted"]
    assert [o.line for o in out] == [1, 2, 3, 4, 5, 6]
    assert len(engine.store.read_log(0, 100)) == 4


def test_re_ingesting_stored_events_reports_duplicates_and_stores_nothing(engine, clock):
    events = [registered()] + [visit(at=f"2025-02-01T09:{m:02d}:00+08:00") for m in range(30)]
    list(engine.ingestor(clock=clock, batch_size=7).ingest(list(enumerate(events, 1))))
    again = list(engine.ingestor(clock=clock, batch_size=7).ingest(list(enumerate(events + [visit()], 1))))
    assert statuses(again) == ["duplicate"] * 31 + ["accepted"]
    assert len(engine.store.read_log(0, 100)) == 32


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 1000])
def test_a_verdict_does_not_depend_on_where_the_batches_split(engine, clock, batch_size):
    """Events checked while an earlier batch is in flight are ordered after that batch's events.

    Two deposits into one account at one instant share what the account keeps
    in stored order: the demand deposit, stored first, takes the 100 held, so
    the time deposit (which would have earned double) earns nothing and one
    point is available, whichever batch each deposit was checked in.
    """
    from tests.factories import event, withdrawal

    events = [
        registered(),
        visit(at="2025-01-01T10:00:00+08:00"),
        deposit(at="2025-01-02T09:00:00+08:00", amount="100.00"),
        deposit(at="2025-01-02T09:00:00+08:00", amount="100.00", product="time", term_months=12),
        withdrawal(at="2025-01-03T09:00:00+08:00", amount="100.00"),
        event("points.redeemed", "C1", "2025-02-10T09:00:00+08:00", {"points": 2, "reward": "cup"}),
    ]
    out = list(engine.ingestor(clock=clock, batch_size=batch_size).ingest(list(enumerate(events, 1))))
    assert statuses(out) == ["accepted"] * 5 + ["rejected"]
    assert out[-1].error == "cannot redeem 2 points: 1 available at 2025-02-10T09:00:00+08:00"
