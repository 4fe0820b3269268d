"""POLICY §9 for referral qualification (§5): the minimum first deposit is the one in force at R's first deposit,
as the store's policy stream holds it when the rule is checked.

A version ``referral-20k`` raises the minimum from 10,000 to 20,000 CNY from B = 2025-03-01T00:00+08:00. A first
deposit of 15,000 one microsecond before B qualifies under the old minimum; at B it does not; 20,000 at B does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.conftest import KEK
from tests.factories import deposit, registered
from tests.support.instants import utc
from tests.test_rules_referrals import A_REGISTERED, R_REGISTERED, qualified, referral
from timeline.application.ingest import Ingestor
from timeline.application.policy_store import PolicyStream
from timeline.application.qualify import Qualifier
from timeline.crypto import KeyWrapper
from timeline.domain.policy import Policy, load_policy
from timeline.engine import Engine, acceptance_rules
from timeline.store.memory import MemoryEventStore

BASE = load_policy()
B = "2025-03-01T00:00:00+08:00"
JUST_BEFORE_B = "2025-02-28T23:59:59.999999+08:00"
PUBLISHED = dt.datetime(2025, 1, 15, tzinfo=dt.UTC)
"""Recorded before any event below: the version is known to every decision."""


def raised(policy_id: str = "referral-20k", minimum: str = "20000") -> Policy:
    data = BASE.model_dump(mode="json")
    data["id"] = policy_id
    data["referral"]["min_first_deposit"] = minimum
    return Policy.model_validate(data)


def publish(engine: Engine, policy: Policy | None = None, effective: str = B) -> None:
    PolicyStream(engine.store, engine.policy).publish(policy or raised(), utc(effective), PUBLISHED)


def referred_people(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    """Each referrer registered and referring its referred customer, who registers."""
    events = []
    for referrer, referred in pairs:
        events += [
            registered(referrer, at=A_REGISTERED),
            referral(referrer, referred),
            registered(referred, at=R_REGISTERED),
        ]
    return events


FIRST_DEPOSITS = [
    deposit("R1", at=JUST_BEFORE_B, amount="15000.00"),
    deposit("R2", at=B, amount="15000.00"),
    deposit("R3", at=B, amount="20000.00"),
]
PEOPLE = referred_people(("A1", "R1"), ("A2", "R2"), ("A3", "R3"))


def test_a_first_deposit_before_the_raise_qualifies_under_the_old_minimum_and_at_it_under_the_new(branch):
    publish(branch.engine)
    branch.accept(*PEOPLE)
    branch.accept(*FIRST_DEPOSITS)

    assert len(qualified(branch, "A1")) == 1  # 15,000 at B − 1 µs: the 10,000 then in force
    assert qualified(branch, "A2") == []  # 15,000 at B: below the 20,000 in force from B
    assert len(qualified(branch, "A3")) == 1  # exactly the new minimum


def test_a_version_lowering_the_minimum_from_b_qualifies_a_first_deposit_at_b_only(branch):
    publish(branch.engine, raised("referral-5k", "5000"))
    branch.accept(*referred_people(("A1", "R1"), ("A2", "R2")))
    branch.accept(deposit("R1", at=JUST_BEFORE_B, amount="5000.00"), deposit("R2", at=B, amount="5000.00"))

    assert qualified(branch, "A1") == []
    assert len(qualified(branch, "A2")) == 1


def test_a_version_published_while_an_ingest_runs_decides_from_its_next_batch(branch):
    ingestor = branch.engine.ingestor(clock=lambda: branch.now)
    first = list(ingestor.ingest(list(enumerate(PEOPLE, 1))))
    publish(branch.engine)
    second = list(ingestor.ingest(list(enumerate(FIRST_DEPOSITS, 1))))

    assert {o.status for o in first + second} == {"accepted"}
    assert [len(qualified(branch, a)) for a in ("A1", "A2", "A3")] == [1, 0, 1]


def test_a_qualification_stored_before_a_publish_is_final(branch):
    branch.accept(*PEOPLE[3:6], deposit("R2", at=B, amount="15000.00"))
    publish(branch.engine)  # would refuse 15,000 at B, but the decision was taken and is never withdrawn

    assert len(qualified(branch, "A2")) == 1
    assert branch.engine.requalify(clock=lambda: branch.now) == []
    assert len(qualified(branch, "A2")) == 1


def test_requalify_decides_under_the_version_in_force_at_each_first_deposit():
    store = MemoryEventStore()
    engine = Engine(store, KeyWrapper(KEK))
    publish(engine)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    unwatched = Ingestor(store, engine.wrapper, acceptance_rules(engine.policy), clock=lambda: now)  # no §5 inline
    assert {o.status for o in unwatched.ingest(list(enumerate(PEOPLE + FIRST_DEPOSITS, 1)))} == {"accepted"}

    events = Qualifier(store, engine.policy).qualifications({"R1", "R2", "R3"})

    assert sorted(e["customer_id"] for e in events) == ["A1", "A3"]
