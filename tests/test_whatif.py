"""Issue 13 item 3: what-if folds every customer under the current policy and a candidate, and writes nothing.

A scenario checked by hand (one threshold raised: who moves, at the boundary
value), then properties: a candidate that is the policy in force changes
nothing; a candidate that differs in one threshold moves exactly the customers
whose AUM ends between the two values, and no customer whose AUM never lay
between them differs at all; worker processes answer as one process does.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KEK
from tests.factories import deposit, registered, visit, withdrawal
from tests.test_policy_schema import changed
from timeline.application.whatif import Question, Report, what_if
from timeline.crypto import KeyWrapper
from timeline.domain.policy import Policy, load_policy, parse_policy
from timeline.engine import Engine
from timeline.store.memory import MemoryEventStore
from timeline.synthetic.generate import generate_branch

POLICY = load_policy()
START = dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
AS_OF = START + dt.timedelta(days=60)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def candidate(threshold: str, tier: int = 1, policy_id: str = "candidate") -> Policy:
    return parse_policy(changed("id", policy_id, changed(f"tier.tiers.{tier}.threshold", threshold)))


def at(days: float) -> str:
    return (START + dt.timedelta(days=days)).isoformat()


def ingested(events: list[dict[str, Any]]) -> Engine:
    engine = Engine(MemoryEventStore(), KeyWrapper(KEK))
    outcomes = list(engine.ingestor(clock=lambda: NOW).ingest(list(enumerate(events, 1))))
    assert {o.status for o in outcomes} == {"accepted"}, [o.to_json() for o in outcomes if o.status != "accepted"]
    return engine


def ask(engine: Engine, policy: Policy, as_of: dt.datetime = AS_OF, **kwargs: Any) -> Report:
    return what_if(engine.store, engine.policy, Question(policy, as_of, NOW, **kwargs))


def holding(customer_id: str, amount: str, branch: str = "BR001") -> list[dict[str, Any]]:
    return [
        registered(customer_id, at=at(0), branch_id=branch),
        deposit(customer_id, at=at(1), amount=amount),
    ]


def test_raising_the_affluent_threshold_moves_the_customer_between_the_two_values_only():
    engine = ingested(
        [
            *holding("C1", "30000.00"),
            *holding("C2", "60000.00"),
            *holding("C3", "80000.00"),
            *holding("C4", "90000.00", branch="BR002"),
        ]
    )
    report = ask(engine, candidate("80000"))
    [moved] = [c.to_json() for c in report.differing]
    assert moved["customer_id"] == "C2"
    current, cand = moved["current"], moved["candidate"]
    assert (current["tier"], current["tier_rule"], current["policy"]) == ("affluent", "upgrade after hold", POLICY.id)
    assert current["tier_reason"] == "AUM stayed at or above 50,000.00 CNY for 7 days (lowest 60,000.00 CNY)"
    assert (cand["tier"], cand["tier_rule"], cand["policy"]) == ("mass", "registered", "candidate")
    assert current["aum"] == cand["aum"] == "60000.00"
    assert current["points"] == cand["points"] == 600
    assert current["points_rules"] == cand["points_rules"] == {"deposit held": 600}
    assert report.summary_json() == {
        "customers": 4,
        "differing": 1,
        "tier_moves": [{"from": "affluent", "to": "mass", "customers": 1}],
        "entering_at_risk": 0,
        "leaving_at_risk": 0,
        "points_outstanding": {"current": 2600, "candidate": 2600},
        "tiers": {
            "current": {"mass": 1, "affluent": 3, "high_net_worth": 0, "private": 0},
            "candidate": {"mass": 2, "affluent": 2, "high_net_worth": 0, "private": 0},
        },
        "lifecycle": {
            "current": {"prospect": 0, "churned": 0, "at_risk": 0, "loyal": 0, "established": 0, "new": 4},
            "candidate": {"prospect": 0, "churned": 0, "at_risk": 0, "loyal": 0, "established": 0, "new": 4},
        },
    }


def test_a_branch_limits_the_comparison_to_its_customers():
    engine = ingested([*holding("C1", "60000.00"), *holding("C2", "60000.00", branch="BR002")])
    report = ask(engine, candidate("80000"), branch="BR002")
    assert [c.customer_id for c in report.differing] == ["C2"]
    assert report.summary_json()["customers"] == 1


def test_a_lower_grace_period_brings_a_downgrade_forward_and_the_rule_says_so():
    engine = ingested(
        [
            registered("C1", at=at(0)),
            deposit("C1", at=at(1), amount="60000.00"),
            withdrawal("C1", at=at(100), amount="50000.00"),
        ]
    )
    shorter = parse_policy(changed("id", "grace-30", changed("tier.downgrade_grace_days", 30)))
    report = ask(engine, shorter, as_of=START + dt.timedelta(days=140))
    [moved] = report.differing
    assert (moved.current.tier, moved.candidate.tier) == ("affluent", "mass")
    assert moved.candidate.tier_rule == "downgrade after grace period"
    assert report.summary_json()["tier_moves"] == [{"from": "affluent", "to": "mass", "customers": 1}]


def test_a_stricter_silence_window_puts_a_quiet_customer_at_risk():
    engine = ingested([*holding("C1", "20000.00"), visit("C1", at=at(100))])
    quieter = parse_policy(changed("id", "silence-90", changed("lifecycle.silence_days", 90)))
    report = ask(engine, quieter, as_of=START + dt.timedelta(days=200))
    [moved] = report.differing
    assert (moved.current.lifecycle, moved.candidate.lifecycle) == ("established", "at_risk")
    assert moved.candidate.lifecycle_rule.startswith("3. at risk (3c")
    summary = report.summary_json()
    assert (summary["entering_at_risk"], summary["leaving_at_risk"], summary["tier_moves"]) == (1, 0, [])


def test_a_higher_points_rate_raises_what_the_bank_owes():
    engine = ingested(holding("C1", "20000.00"))
    richer = parse_policy(changed("id", "unit-50", changed("points.deposit_unit", "50")))
    summary = ask(engine, richer).summary_json()
    assert summary["points_outstanding"] == {"current": 200, "candidate": 400}
    assert summary["differing"] == 1


# --- properties -------------------------------------------------------------------------------------------------

LEVELS = [
    Decimal(v) for v in ("0", "9000", "30000", "49999.99", "50000", "64000", "80000", "120000", "499999", "650000")
]
HELD_DAYS = 100
"""Each AUM level is held this long: longer than the upgrade hold and the downgrade grace, so the tier at the
end is the one the last level meets."""


@st.composite
def branches(draw: st.DrawFn) -> list[list[Decimal]]:
    """Customers, each a sequence of AUM levels held ``HELD_DAYS`` each (the first from the registration)."""
    return draw(st.lists(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=5), min_size=1, max_size=6))


def level_events(customers: list[list[Decimal]]) -> list[dict[str, Any]]:
    events = []
    for index, levels in enumerate(customers, 1):
        customer = f"C{index}"
        events.append(registered(customer, at=at(0)))
        balance = Decimal(0)
        for step, level in enumerate(levels):
            moment = at(step * HELD_DAYS + 1)
            if level > balance:
                events.append(deposit(customer, at=moment, amount=f"{level - balance:.2f}"))
            elif level < balance:
                events.append(withdrawal(customer, at=moment, amount=f"{balance - level:.2f}"))
            balance = level
    return events


def end_of(customers: list[list[Decimal]]) -> dt.datetime:
    return START + dt.timedelta(days=max(len(levels) for levels in customers) * HELD_DAYS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customers=branches())
def test_a_candidate_that_is_the_policy_in_force_changes_nothing(customers):
    engine = ingested(level_events(customers))
    report = ask(engine, parse_policy(changed("id", "same-numbers", POLICY.model_dump(mode="json"))), end_of(customers))
    summary = report.summary_json()
    assert report.differing == [] and summary["differing"] == 0
    assert summary["tier_moves"] == [] and summary["entering_at_risk"] == summary["leaving_at_risk"] == 0
    assert summary["tiers"]["current"] == summary["tiers"]["candidate"]
    assert summary["points_outstanding"]["current"] == summary["points_outstanding"]["candidate"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customers=branches(), threshold=st.sampled_from(["9000", "30000", "50000.01", "64000", "80000", "400000"]))
def test_one_threshold_moves_exactly_the_customers_whose_aum_ends_between_the_two_values(customers, threshold):
    engine = ingested(level_events(customers))
    new = Decimal(threshold)
    old = POLICY.tier.tiers[1].threshold
    low, high = min(old, new), max(old, new)
    report = ask(engine, candidate(threshold), end_of(customers))
    moved = {c.customer_id for c in report.differing if c.current.tier != c.candidate.tier}
    between = {f"C{i}" for i, levels in enumerate(customers, 1) if low <= levels[-1] < high}
    assert moved == between
    never_between = {f"C{i}" for i, levels in enumerate(customers, 1) if not any(low <= v < high for v in levels)}
    assert not never_between & {c.customer_id for c in report.differing}
    assert sum(m["customers"] for m in report.summary_json()["tier_moves"]) == len(moved)


@pytest.mark.backends("sqlite")
def test_worker_processes_answer_as_one_process_does(store):
    engine = Engine(store, KeyWrapper(KEK))
    events = list(generate_branch(40, 1, 3, dt.date(2026, 11, 1)))
    assert {o.status for o in engine.ingestor(batch_size=500).ingest(list(enumerate(events, 1)))} == {"accepted"}
    question = Question(candidate("80000"), dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC))
    alone = what_if(store, engine.policy, question, workers=1)
    shared = what_if(store, engine.policy, question, workers=2)
    assert shared.to_json() == alone.to_json()
    assert alone.tally.customers == 40 and alone.differing
    assert [c.customer_id for c in shared.differing] == sorted(c.customer_id for c in shared.differing)
