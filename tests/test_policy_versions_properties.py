"""Properties of state under policy versions (issue 13), over the random histories of the projection properties.

(a) a second version with the same numbers, in force from any instant, gives every answer of the one policy:
    the several-version folds agree with the single-version fast path;
(b) a version in force after every event changes no answer before its effective instant;
(c) answers as known before a publish are those of the store before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from tests.test_projection_properties import EXAMPLES, Copy, Stores, moments, plans, run
from timeline.application.policy_store import PolicyStream
from timeline.application.states import StateReader
from timeline.domain.policy import Policy, load_policy
from timeline.domain.policy_versions import BEGINNING, PolicyTimeline, PolicyVersion
from timeline.projections.state import customer_state

BASE = load_policy()
PUBLISHED = dt.datetime(2029, 6, 1, tzinfo=dt.UTC)


def variant(policy_id: str, draw: Callable | None = None) -> Policy:
    """The shipped numbers under another id; with ``draw``, other numbers for every rule a version can change."""
    data = BASE.model_dump(mode="json")
    data["id"] = policy_id
    if draw is not None:
        tier, life, points = data["tier"], data["lifecycle"], data["points"]
        tier["tiers"][1]["threshold"] = str(draw(st.sampled_from([20000, 40000, 80000])))
        tier["upgrade_hold_days"] = draw(st.integers(0, 20))
        tier["downgrade_grace_days"] = draw(st.integers(0, 120))
        life["silence_days"] = draw(st.sampled_from([60, 90, 365]))
        life["churn_window_days"] = draw(st.sampled_from([30, 90, 180]))
        points["deposit_hold_days"] = draw(st.integers(0, 45))
        points["deposit_unit"] = str(draw(st.sampled_from([50, 100, 200])))
        points["expiry_years"] = draw(st.integers(1, 4))
        points["survey"] = draw(st.integers(0, 50))
    return Policy.model_validate(data)


def two(second: Policy, effective_from: dt.datetime) -> PolicyTimeline:
    return PolicyTimeline((PolicyVersion(BASE, BEGINNING, BEGINNING), PolicyVersion(second, effective_from, PUBLISHED)))


def summaries(copy: Copy, policy: Policy | PolicyTimeline, qs: list[dt.datetime]) -> list[tuple[Any, ...]]:
    history = StateReader(copy.branch.engine.store, BASE).history(copy.customer_id)
    return [copy.summary(customer_state(history, policy, q, copy.branch.now)) for q in qs]


def test_a_version_with_the_same_numbers_gives_every_answer_of_the_one_policy():
    def body(draw: Callable, stores: Stores) -> None:
        plan = draw(plans())
        copy = stores.fresh(plan)
        copy.send(plan.business_order())
        qs = moments(draw, plan)
        effective = draw(st.sampled_from(qs)) + dt.timedelta(seconds=draw(st.integers(-86400, 86400)))
        assert summaries(copy, two(variant("same-numbers"), effective), qs) == summaries(copy, BASE, qs)

    run(EXAMPLES, body)


def test_a_version_in_force_after_every_event_changes_no_answer_before_it():
    def body(draw: Callable, stores: Stores) -> None:
        plan = draw(plans())
        copy = stores.fresh(plan)
        copy.send(plan.business_order())
        last = max(e.at for e in plan.events)
        effective = last + dt.timedelta(microseconds=draw(st.integers(1, 400 * 86400 * 10**6)))
        qs = [q for q in moments(draw, plan) if q < effective]
        versions = two(variant("other-numbers", draw), effective)
        answers = [s[:5] for s in summaries(copy, versions, qs)]  # tier, stage, points, AUM, activity
        assert answers == [s[:5] for s in summaries(copy, BASE, qs)]

    run(EXAMPLES, body)


def test_answers_as_known_before_a_publish_are_unchanged():
    def body(draw: Callable, stores: Stores) -> None:
        plan = draw(plans())
        copy = stores.fresh(plan)
        copy.branch.recording_at("2029-01-01T00:00:00+00:00")
        copy.send(plan.business_order())
        qs = moments(draw, plan)
        store = copy.branch.engine.store
        reader = StateReader(store, BASE)
        expected = [copy.summary(reader.state(copy.customer_id, q, PUBLISHED)) for q in qs]
        effective = draw(st.sampled_from(qs))
        PolicyStream(store, BASE).publish(variant("published", draw), effective, PUBLISHED + dt.timedelta(seconds=1))
        again = StateReader(store, BASE)
        assert [copy.summary(again.state(copy.customer_id, q, PUBLISHED)) for q in qs] == expected

    run(max(1, EXAMPLES // 4), body)
