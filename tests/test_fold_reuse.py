"""Reusing a fold as a stream grows gives exactly the state of folding it from scratch.

``timeline.projections.state.fold`` extends the previous fold of a stream when the
new events come after every counted one (the usual case: the consumer and
the state reader ask again after appends), and folds again otherwise. Pure:
streams are drawn as recorded events, with events sharing instants, late
events, corrections, money crossing every tier threshold (holds, grace
periods, vestings and expiries in reach), redemptions beyond what is
available, erasure; they grow by random steps and every state is compared,
explanation included, with ``customer_state`` over the same events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import correction, deposit, registered, visit, withdrawal
from timeline.application.states import StateReader
from timeline.domain.errors import UnknownCustomer
from timeline.domain.policy import load_policy
from timeline.domain.recorded import RecordedEvent
from timeline.projections.counted import counted
from timeline.projections.folding import Folded, fold
from timeline.projections.state import Projection, customer_state

POLICY = load_policy()
START = dt.datetime(2023, 1, 1, 1, 0, tzinfo=dt.UTC)
STEPS = [
    dt.timedelta(0),
    dt.timedelta(0),
    dt.timedelta(minutes=10),
    dt.timedelta(days=1),
    dt.timedelta(days=7),
    dt.timedelta(days=8),
    dt.timedelta(days=30),
    dt.timedelta(days=31),
    dt.timedelta(days=91),
    dt.timedelta(days=200),
]
"""Gaps between events: the same instant, minutes, and each of the policy's durations and just past them."""
AMOUNTS = ["100.00", "4999.99", "10000.00", "50000.00", "60000.00", "500000.00", "650000.00", "6000000.00"]
KINDS = ["deposit"] * 4 + ["withdrawal"] * 3 + ["visit", "greeting", "survey", "complaint", "resolution"]
KINDS += ["followup", "completion", "redemption", "qualified", "profile", "correction", "correction", "erasure"]


def _data(draw: Callable, kind: str, serial: int, history: list[RecordedEvent]) -> tuple[str, dict[str, Any]]:
    account = draw(st.sampled_from(["A1", "A2"]))
    if kind == "deposit":
        data: dict[str, Any] = {"account_id": account, "amount": draw(st.sampled_from(AMOUNTS)), "product": "demand"}
        if draw(st.booleans()):
            data.update(product="time", term_months=draw(st.sampled_from([6, 12, 36])))
        return "deposit.made", data
    if kind == "withdrawal":
        return "withdrawal.made", {"account_id": account, "amount": draw(st.sampled_from(AMOUNTS))}
    if kind == "visit":
        return "visit.recorded", {"channel": "branch", "purpose": "review"}
    if kind == "greeting":
        return "greeting.sent", {"occasion": draw(st.sampled_from(["birthday", "festival"])), "channel": "sms"}
    if kind == "survey":
        return "survey.completed", {"score": 4}
    if kind == "complaint":
        return "complaint.filed", {
            "complaint_id": f"K{draw(st.integers(1, 3))}",
            "category": "fees",
            "severity": "high",
            "description": "x",
        }
    if kind == "resolution":
        return "complaint.resolved", {
            "complaint_id": f"K{draw(st.integers(1, 3))}",
            "resolution": "refund",
            "satisfied": True,
        }
    if kind == "followup":
        due = (START + dt.timedelta(days=draw(st.integers(0, 900)))).date().isoformat()
        return "followup.scheduled", {"followup_id": f"F{draw(st.integers(1, 3))}", "due_date": due, "reason": "call"}
    if kind == "completion":
        return "followup.completed", {"followup_id": f"F{draw(st.integers(1, 3))}", "outcome": "done"}
    if kind == "redemption":
        return "points.redeemed", {"points": draw(st.sampled_from([1, 20, 150, 5000])), "reward": "tea"}
    if kind == "qualified":
        return "referral.qualified", {"referred_customer_id": f"R{serial}", "referral_event_id": str(uuid.uuid4())}
    if kind == "profile":
        return "customer.profile_updated", {"relationship_manager": draw(st.sampled_from(["RM002", "RM003"]))}
    if kind == "erasure":
        return "customer.erased", {"reason": "asked"}
    voidable = [e for e in history[1:] if e.type not in ("correction.recorded", "customer.erased")]
    if not voidable:
        return "visit.recorded", {"channel": "phone", "purpose": "check"}
    target = draw(st.sampled_from(voidable))
    return "correction.recorded", {"voids_event_id": str(target.event_id), "reason": "mistake"}


def _never_negative(history: list[RecordedEvent]) -> bool:
    """POLICY §2: no account below zero at any instant, as the store would have accepted it."""
    balances: dict[str, Decimal] = {}
    events = counted(history).events
    for index, event in enumerate(events):
        if event.type in ("deposit.made", "withdrawal.made"):
            amount = Decimal(event.data["amount"])
            account = event.data["account_id"]
            balances[account] = balances.get(account, Decimal(0)) + (
                amount if event.type == "deposit.made" else -amount
            )
        closes_instant = index + 1 == len(events) or events[index + 1].occurred_at != event.occurred_at
        if closes_instant and any(value < 0 for value in balances.values()):
            return False
    return True


@st.composite
def streams(draw: Callable) -> list[RecordedEvent]:
    """A stream in stream order: positions ascend, ``recorded_at`` ascends by batch, business time wanders.

    As in a store, every prefix keeps balances at or above zero (a negative AUM would make the tier's
    downgrade pend forever: acceptance rules it out).
    """
    registration = RecordedEvent(
        1,
        "C1",
        1,
        uuid.uuid4(),
        "customer.registered",
        1,
        START,
        START,
        None,
        None,
        {"branch_id": "BR1", "relationship_manager": "RM001", "segment": "individual"},
        "",
        "",
    )
    history = [registration]
    occurred = recorded = START
    serial = itertools.count(2)
    for _ in range(draw(st.integers(1, 45))):
        number = next(serial)
        kind, data = _data(draw, draw(st.sampled_from(KINDS)), number, history)
        late = draw(st.integers(0, 9)) == 0
        if late:
            moment = occurred - draw(st.sampled_from(STEPS[2:]))
            moment = max(moment, START)
        else:
            occurred = moment = occurred + draw(st.sampled_from(STEPS))
        if draw(st.booleans()):
            recorded += dt.timedelta(seconds=draw(st.integers(1, 3)))
        recorded = max(recorded, moment)
        candidate = RecordedEvent(
            number * 3,
            "C1",
            len(history) + 1,
            uuid.uuid4(),
            kind,
            1,
            moment,
            recorded,
            None,
            None,
            data,
            "",
            "",
        )
        if _never_negative([*history, candidate]):
            history.append(candidate)
    return history


def _state(history: list[RecordedEvent], folded: Folded | None, as_of: dt.datetime) -> dict[str, Any] | None:
    try:
        if folded is None:
            return customer_state(history, POLICY, as_of, as_of).explain_json()
        return folded.state(history, POLICY, as_of, as_of).explain_json()
    except UnknownCustomer:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=streams(), data=st.data())
def test_a_fold_grown_with_its_stream_answers_as_folding_from_scratch(history, data):
    folded: Folded | None = None
    length = 0
    while length < len(history):
        length = min(len(history), length + data.draw(st.sampled_from([1, 1, 1, 2, 3, 7])))
        part = history[:length]
        folded = fold(part, POLICY, folded)
        latest = max(max(e.occurred_at, e.recorded_at) for e in part)
        for later in data.draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=3)):
            as_of = latest + later
            assert _state(part, folded, as_of) == _state(part, None, as_of)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=streams(), data=st.data())
def test_an_extended_projection_is_the_projection_of_all_the_events(history, data):
    events = sorted((e for e in history if e.type != "correction.recorded"), key=lambda e: (e.occurred_at, e.position))
    cut = data.draw(st.integers(1, len(events)))
    grown = Projection(events[:cut], POLICY).extended(events[cut:])
    whole = Projection(events, POLICY)
    as_of = events[-1].occurred_at + data.draw(st.sampled_from(STEPS))
    assert grown.at(as_of, as_of).explain_json() == whole.at(as_of, as_of).explain_json()
    assert grown.tier_changes == whole.tier_changes
    assert grown.point_items == whole.point_items


def _event(position: int, kind: str, at: dt.datetime, data: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(position, "C1", position, uuid.uuid4(), kind, 1, at, at, None, None, data, "", "")


def test_a_fold_is_reused_for_later_events_and_folded_again_for_late_events_and_corrections(monkeypatch):
    registered = {"branch_id": "BR1", "relationship_manager": "RM001", "segment": "individual"}
    history = [
        _event(1, "customer.registered", START, registered),
        _event(2, "deposit.made", START + STEPS[4], {"account_id": "A1", "amount": "60000.00", "product": "demand"}),
    ]
    first = fold(history, POLICY)
    visit = {"channel": "branch", "purpose": "review"}
    later = _event(3, "visit.recorded", START + STEPS[5], visit)
    late = _event(3, "visit.recorded", START + STEPS[3], visit)
    correction = _event(3, "correction.recorded", START + STEPS[5], {"voids_event_id": str(history[1].event_id)})
    built = []
    monkeypatch.setattr(Projection, "__init__", _counting(Projection.__init__, built))
    grown = fold([*history, later], POLICY, first)
    assert built == [] and grown.length == 3
    assert fold([*history, later], POLICY, grown) is grown
    assert fold([*history, late], POLICY, first).projection.events[1] is late
    assert fold([*history, correction], POLICY, first).projection.events == history[:1]
    assert len(built) == 2


def _counting(init: Callable, calls: list) -> Callable:
    def counted_init(self: Projection, *args: Any) -> None:
        calls.append(args)
        init(self, *args)

    return counted_init


def test_a_state_reader_asked_again_after_appends_answers_as_a_fresh_one(branch):
    """StateReader grows its cached fold with what was stored since: in order, late, and corrected."""
    reader = StateReader(branch.engine.store, branch.engine.policy)
    small = deposit(at="2025-03-01T09:00:00+08:00", amount="100.00", account_id="A2")
    steps = [
        [registered(), deposit(at="2025-01-02T09:00:00+08:00", amount="60000.00")],
        [deposit(at="2025-01-20T09:00:00+08:00", amount="500000.00"), visit(at="2025-01-20T09:00:00+08:00")],
        [withdrawal(at="2025-01-10T09:00:00+08:00", amount="50000.00")],  # late: occurred before the last event
        [small],
        [correction(small["event_id"], at="2025-03-02T09:00:00+08:00")],
        [visit(at="2025-03-03T09:00:00+08:00")],
    ]
    for step in steps:
        branch.accept(*step)
        for as_of in (branch.now, branch.now + dt.timedelta(days=400)):
            fresh = StateReader(branch.engine.store, branch.engine.policy)
            ours = reader.state("C1", as_of, branch.now).explain_json()
            assert ours == fresh.state("C1", as_of, branch.now).explain_json()
