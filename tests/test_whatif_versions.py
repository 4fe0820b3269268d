"""What-if under the store's policy versions: the current side is the versions in force as known at ``known_at``,
the candidate side the same versions up to ``from``, then the candidate.

One customer holds 60,000 CNY from day 1; version ``raise-80k`` (affluent from 80,000) is published effective
day 50. Under the versions in force she is affluent until the downgrade grace (90 days from day 50) runs out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import deposit, registered
from tests.test_policy_schema import changed
from tests.test_whatif import NOW, START, at, branches, candidate, end_of, ingested, level_events
from timeline.application.policy_store import PolicyStream
from timeline.application.whatif import Question, Report, what_if
from timeline.domain.policy import Policy, parse_policy
from timeline.domain.policy_errors import InvalidPolicy
from timeline.engine import Engine

EFFECTIVE = START + dt.timedelta(days=50)
PUBLISHED = NOW + dt.timedelta(days=1)
"""After the events were recorded (at ``NOW``)."""
LATER = NOW + dt.timedelta(days=2)
RAISE = candidate("80000", policy_id="raise-80k")


def day(n: float) -> dt.datetime:
    return START + dt.timedelta(days=n)


def published(events: list[dict[str, Any]], policy: Policy = RAISE, effective: dt.datetime = EFFECTIVE) -> Engine:
    engine = ingested(events)
    PolicyStream(engine.store, engine.policy).publish(policy, effective, PUBLISHED)
    return engine


def ask(engine: Engine, policy: Policy, as_of: dt.datetime, **kwargs: Any) -> Report:
    known_at = kwargs.pop("known_at", LATER)
    return what_if(engine.store, engine.policy, Question(policy, as_of, known_at, **kwargs))


HOLDER = [registered("C1", at=at(0)), deposit("C1", at=at(1), amount="60000.00")]


def test_the_published_version_from_its_own_date_is_no_difference():
    engine = published(HOLDER)
    for as_of in (day(40), day(60), day(139), day(141), day(400)):
        report = ask(engine, RAISE, as_of, effective_from=EFFECTIVE)
        assert report.differing == [] and report.tally.customers == 1, as_of


def test_the_published_version_from_the_beginning_drops_her_before_the_grace_ends():
    engine = published(HOLDER)
    report = ask(engine, RAISE, day(60))
    [moved] = report.differing
    assert (moved.current.tier, moved.current.policy) == ("affluent", "raise-80k")
    assert (moved.candidate.tier, moved.candidate.tier_rule) == ("mass", "registered")
    assert report.summary_json()["tier_moves"] == [{"from": "affluent", "to": "mass", "customers": 1}]
    assert ask(engine, RAISE, day(141)).differing == []  # the grace ran out at day 140 under the versions


def test_a_candidate_from_a_date_after_as_of_is_no_difference_there():
    engine = published(HOLDER)
    lower = candidate("70000", policy_id="raise-70k")
    assert ask(engine, lower, day(60), effective_from=day(61)).differing == []
    assert ask(engine, lower, day(400), effective_from=day(61)).differing == []  # 60,000 is below both


def test_as_known_before_the_publish_the_current_side_has_no_version():
    engine = published(HOLDER)
    before = ask(engine, RAISE, day(200), effective_from=EFFECTIVE, known_at=PUBLISHED - dt.timedelta(seconds=1))
    [moved] = before.differing
    assert (moved.current.tier, moved.current.policy) == ("affluent", "bank-default-v1")
    assert (moved.candidate.tier, moved.candidate.policy) == ("mass", "raise-80k")
    assert before.current.id == "bank-default-v1"
    assert ask(engine, RAISE, day(200), effective_from=EFFECTIVE).differing == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customers=branches(), effective_days=st.integers(1, 400), threshold=st.sampled_from(["30000", "80000"]))
def test_a_what_if_with_the_versions_in_force_reports_no_difference(customers, effective_days, threshold):
    version = candidate(threshold, policy_id=f"v-{threshold}")
    engine = published(level_events(customers), version, day(effective_days))
    for as_of in (day(effective_days) - dt.timedelta(microseconds=1), day(effective_days), end_of(customers)):
        report = ask(engine, version, as_of, effective_from=day(effective_days))
        assert report.differing == [], as_of
        summary = report.summary_json()
        assert summary["tiers"]["current"] == summary["tiers"]["candidate"]


def test_a_candidate_that_renames_a_tier_may_replace_every_version_but_not_follow_one():
    engine = published(HOLDER)
    renamed = parse_policy(
        changed("id", "gold", changed("tier.tiers.1.name", "gold", changed("lifecycle.loyal_min_tier", "gold")))
    )
    report = ask(engine, renamed, day(60))
    assert [(c.current.tier, c.candidate.tier) for c in report.differing] == [("affluent", "gold")]
    with pytest.raises(InvalidPolicy) as refused:
        ask(engine, renamed, day(60), effective_from=day(20))
    assert str(refused.value) == (
        "the candidate cannot follow the versions in force: "
        'tier.tiers[1].name: "gold" differs from "affluent" of bank-default-v1 (versions keep it)'
    )
