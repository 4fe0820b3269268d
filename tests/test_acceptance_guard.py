"""The guard's incremental state decides redemptions as the points projection folded from scratch would."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from timeline.domain.errors import RejectedEvent
from timeline.domain.policy import load_policy
from timeline.domain.recorded import RecordedEvent
from timeline.projections.acceptance import Guard
from timeline.projections.balances import balances
from timeline.projections.counted import counted
from timeline.projections.points import points_as_of

POLICY = load_policy()
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
COMPARED: list[str] = []


def _event(position: int, kind: str, at: dt.datetime, data: dict) -> RecordedEvent:
    return RecordedEvent(position, "C1", position, uuid.uuid4(), kind, 1, at, at, None, None, data, "", "")


_step = st.tuples(
    st.sampled_from(["deposit", "time deposit", "withdrawal", "birthday", "survey", "void", "redeem"]),
    st.integers(min_value=0, max_value=900),  # days after START: late events are common
    st.sampled_from(["A1", "A2"]),
    st.integers(min_value=1, max_value=300).map(lambda n: n * 100),
)


def _available(history: list[RecordedEvent], at: dt.datetime) -> int:
    events = counted(history).as_of(at)
    return points_as_of(events, balances(events).accounts, POLICY, at).available


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, min_size=1, max_size=40))
def test_a_redemption_is_refused_exactly_when_the_projection_has_too_few_points(steps):
    registration = _event(0, "customer.registered", START - dt.timedelta(days=1), {"segment": "individual"})
    history: list[RecordedEvent] = [registration]
    guard = Guard(POLICY, history)
    voidable: list[RecordedEvent] = []
    for position, (kind, day, account, amount) in enumerate(steps, start=1):
        at = START + dt.timedelta(days=day, hours=position % 3)
        if kind == "redeem":
            wanted = max(1, _available(history, at))
            for points in (wanted, wanted + 1):
                candidate = _event(position, "points.redeemed", at, {"points": points, "reward": "cup"})
                try:
                    guard.check(candidate)
                    verdict = "accepted"
                except RejectedEvent as exc:
                    verdict = "earlier" if "earlier than" in str(exc) else "refused"
                if verdict == "earlier":
                    break
                assert verdict == ("accepted" if points <= _available(history, at) else "refused")
                COMPARED.append(verdict)
            continue
        if kind == "void":
            if not voidable:
                continue
            target = voidable.pop(day % len(voidable))
            event = _event(position, "correction.recorded", at, {"voids_event_id": str(target.event_id), "reason": "x"})
        elif kind in ("deposit", "time deposit"):
            data = {"account_id": account, "amount": f"{amount}.00", "product": "demand"}
            if kind == "time deposit":
                data = {**data, "product": "time", "term_months": 12}
            event = _event(position, "deposit.made", at, data)
        elif kind == "withdrawal":
            event = _event(position, "withdrawal.made", at, {"account_id": account, "amount": f"{amount}.00"})
        elif kind == "birthday":
            event = _event(position, "greeting.sent", at, {"occasion": "birthday", "channel": "sms"})
        else:
            event = _event(position, "survey.completed", at, {"score": 4})
        try:
            guard.check(event)
        except RejectedEvent:
            continue
        history.append(event)
        guard.record(event)
        if event.type != "correction.recorded":
            voidable.append(event)


def test_the_property_above_compared_both_verdicts():
    test_a_redemption_is_refused_exactly_when_the_projection_has_too_few_points()
    assert {"accepted", "refused"} <= set(COMPARED)
