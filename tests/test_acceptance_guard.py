"""The guard's incremental state decides redemptions as the points projection folded from scratch would."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from timeline.domain.errors import RejectedEvent
from timeline.domain.policy import load_policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.projections.acceptance import Guard
from timeline.projections.balances import balances
from timeline.projections.counted import counted
from timeline.projections.points import points_as_of
from timeline.projections.state import customer_state

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


# Under policy versions: the guard's compact points against `state`'s (issue 13: every decision at an instant
# uses the version in force there; a vesting the deposit's, a bucket's expiry its first earning's).

FAR = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_points_change = st.fixed_dictionaries(
    {},
    optional={
        "deposit_hold_days": st.sampled_from([0, 10, 45]),
        "deposit_unit": st.sampled_from(["50", "0.3", "1000"]),
        "long_time_deposit_months": st.sampled_from([0, 6, 24]),
        "long_time_deposit_multiplier": st.sampled_from([1, 3]),
        "referral": st.sampled_from([0, 40]),
        "birthday": st.sampled_from([0, 7]),
        "survey": st.sampled_from([0, 55]),
        "expiry_years": st.sampled_from([1, 2]),
    },
)
_days = st.one_of(st.integers(min_value=0, max_value=120), st.integers(min_value=0, max_value=1500))
"""Days after START: mostly close together (a version's boundary inside a holding period), some past every
bucket's expiry under the shortest one."""
_version = st.tuples(_days, _points_change)
_versioned_step = st.tuples(
    st.sampled_from(
        ["deposit", "time deposit", "withdrawal", "birthday", "festival", "survey", "qualified", "void", "redeem"]
    ),
    _days,
    st.sampled_from([0, 12]),  # hours: events of one instant are common
    st.sampled_from(["A1", "A2"]),
    st.integers(min_value=1, max_value=300).map(lambda n: n * 100),
)


def _timeline(versions: list[tuple[int, dict]]) -> PolicyTimeline:
    timeline = PolicyTimeline.single(POLICY)
    for number, (day, changes) in enumerate(versions):
        policy = POLICY.model_copy(
            update={
                "id": f"v{number}",
                "points": POLICY.points.model_validate({**POLICY.points.model_dump(), **changes}),
            }
        )
        timeline = timeline.with_published(policy, START + dt.timedelta(days=day, hours=6), START)
    return timeline


@settings(max_examples=400, deadline=None)
@given(st.lists(_versioned_step, min_size=1, max_size=40), st.lists(_version, max_size=2))
def test_a_redemption_is_refused_exactly_when_the_state_under_the_versions_has_too_few_points(steps, versions):
    timeline = _timeline(versions)
    data = {"segment": "individual", "branch_id": "BR1", "relationship_manager": "RM1"}
    registration = _event(0, "customer.registered", START - dt.timedelta(days=1), data)
    history: list[RecordedEvent] = [registration]
    guard = Guard(POLICY, history, versions=lambda: timeline)
    voidable: list[RecordedEvent] = []
    for position, (kind, day, hour, account, amount) in enumerate(steps, start=1):
        at = START + dt.timedelta(days=day, hours=hour)
        if kind == "redeem":
            available = customer_state(history, timeline, at, FAR).points.available
            for points in (max(1, available), max(1, available) + 1):
                candidate = _event(position, "points.redeemed", at, {"points": points, "reward": "cup"})
                try:
                    guard.check(candidate)
                except RejectedEvent as exc:
                    if "earlier than" in str(exc):
                        break
                    assert points > available, str(exc)
                    COMPARED_UNDER_VERSIONS.append("refused")
                else:
                    assert points <= available
                    COMPARED_UNDER_VERSIONS.append("accepted")
            continue
        if kind == "void":
            if not voidable:
                continue
            target = voidable.pop(day % len(voidable))
            event = _event(position, "correction.recorded", at, {"voids_event_id": str(target.event_id), "reason": "x"})
        elif kind in ("deposit", "time deposit"):
            data = {"account_id": account, "amount": f"{amount}.00", "product": "demand"}
            if kind == "time deposit":
                data = {**data, "product": "time", "term_months": [6, 12, 36][amount % 3]}
            event = _event(position, "deposit.made", at, data)
        elif kind == "withdrawal":
            event = _event(position, "withdrawal.made", at, {"account_id": account, "amount": f"{amount}.00"})
        elif kind in ("birthday", "festival"):
            event = _event(position, "greeting.sent", at, {"occasion": kind, "channel": "sms"})
        elif kind == "qualified":
            data = {"referred_customer_id": f"R{position}", "referral_event_id": str(uuid.uuid4())}
            event = _event(position, "referral.qualified", at, data)
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


COMPARED_UNDER_VERSIONS: list[str] = []


def test_the_property_under_versions_compared_both_verdicts():
    test_a_redemption_is_refused_exactly_when_the_state_under_the_versions_has_too_few_points()
    assert {"accepted", "refused"} <= set(COMPARED_UNDER_VERSIONS)
