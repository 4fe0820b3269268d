"""``next_change_at``: the first instant after Q at which time alone changes the tier, the stage or the points.

The search is exact: the state there differs from the state at Q, and one microsecond earlier it is still
the state at Q, however many instants at which a rule could flip come first. Pure: the projection is
asked directly over events as they are stored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from tests.factories import deposit, event, registered, visit, withdrawal
from timeline.domain.events import parse_event
from timeline.domain.policy import load_policy
from timeline.domain.recorded import RecordedEvent
from timeline.projections.state import CustomerState, customer_state

POLICY = load_policy()
REGISTERED = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
D = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
"""The first deposit."""
TICK = dt.timedelta(microseconds=1)


def text(moment: dt.datetime) -> str:
    return moment.isoformat()


def stored(inputs: Sequence[dict[str, Any]]) -> list[RecordedEvent]:
    """The events as the store would hold them: validated, data in JSON form, recorded when they occurred."""
    history = []
    for position, obj in enumerate(inputs, 1):
        model = parse_event(obj)
        data = {k: v for k, v in model.model_dump(mode="json")["data"].items() if v is not None}
        moment = model.occurred_at
        event_id = model.event_id or uuid.uuid4()
        history.append(
            RecordedEvent(
                position,
                model.customer_id,
                position,
                event_id,
                obj["type"],
                1,
                moment,
                moment,
                None,
                None,
                data,
                "",
                "",
            )
        )
    return history


def state(history: list[RecordedEvent], as_of: dt.datetime) -> CustomerState:
    return customer_state(history, POLICY, as_of, as_of)


def observable(s: CustomerState) -> tuple[str, str, int]:
    return s.tier.tier, s.lifecycle.stage, s.points.available


def assert_next_change(history: list[RecordedEvent], as_of: dt.datetime, expected: dt.datetime) -> CustomerState:
    """``next_change_at`` is ``expected``; the state holds until just before it and changes there."""
    now = state(history, as_of)
    assert now.next_change_at == expected
    assert observable(state(history, expected - TICK)) == observable(now)
    later = state(history, expected)
    assert observable(later) != observable(now)
    return later


def money_history(*movements: dict[str, Any]) -> list[RecordedEvent]:
    return stored([registered(at=text(REGISTERED)), *movements])


def test_a_drop_that_ends_after_fifty_peak_falls_is_found_exactly():
    """1,000,000 deposited, then 150 withdrawals of 4,000 every 12 hours: AUM 400,000 is below half its 90-day
    peak (3b) until 50 of the peak's falls have brought it to 800,000 — instants that come after more than 40
    others at which the peak falls, so a bounded number of probes could not reach it."""
    withdrawals = [withdrawal(at=text(D + dt.timedelta(hours=12 * k)), amount="4000.00") for k in range(1, 151)]
    history = money_history(deposit(at=text(D), amount="1000000.00"), *withdrawals)
    last = D + dt.timedelta(hours=12 * 150)
    assert state(history, last).lifecycle.stage == "at_risk"
    fiftieth_fall = D + dt.timedelta(hours=12 * 50) + dt.timedelta(days=90)
    later = assert_next_change(history, last, fiftieth_fall)
    assert later.lifecycle.stage == "new"


def test_a_customer_becomes_established_at_exactly_180_days_of_tenure():
    history = money_history(deposit(at=text(D)), visit(at=text(D + dt.timedelta(days=100))))
    later = assert_next_change(history, D + dt.timedelta(days=100), D + dt.timedelta(days=180))
    assert later.lifecycle.stage == "established"


def test_a_customer_is_at_risk_at_exactly_180_days_after_the_last_activity():
    history = money_history(deposit(at=text(D)), visit(at=text(D + dt.timedelta(days=100))))
    later = assert_next_change(history, D + dt.timedelta(days=180), D + dt.timedelta(days=280))
    assert (later.lifecycle.stage, later.lifecycle.risks) == ("at_risk", ("3c",))


def test_an_unresolved_complaint_puts_the_customer_at_risk_at_exactly_30_days():
    filed = D + dt.timedelta(days=40)
    complaint = event(
        "complaint.filed",
        "C1",
        text(filed),
        {"complaint_id": "CP1", "category": "service", "severity": "low", "description": "queue"},
    )
    history = money_history(deposit(at=text(D)), complaint)
    later = assert_next_change(history, filed, filed + dt.timedelta(days=30))
    assert (later.lifecycle.stage, later.lifecycle.risks) == ("at_risk", ("3a",))


def test_a_customer_churns_at_exactly_90_days_at_zero():
    emptied = D + dt.timedelta(days=40)
    history = money_history(deposit(at=text(D)), withdrawal(at=text(emptied), amount="1000.00"))
    later = assert_next_change(history, emptied, emptied + dt.timedelta(days=90))
    assert later.lifecycle.stage == "churned"


def test_a_long_standing_customer_becomes_loyal_when_time_alone_upgrades_the_tier():
    raised = D + dt.timedelta(days=800)
    history = money_history(deposit(at=text(D)), deposit(at=text(raised), amount="100000.00"))
    assert state(history, raised).lifecycle.stage == "established"
    later = assert_next_change(history, raised, raised + dt.timedelta(days=7))
    assert (later.tier.tier, later.lifecycle.stage) == ("affluent", "loyal")


def test_nothing_changes_with_time_alone_for_a_customer_who_never_deposited():
    history = stored([registered(at=text(REGISTERED))])
    assert state(history, REGISTERED + dt.timedelta(days=1000)).next_change_at is None
