"""Acceptance under the policy versions (issue 13): a redemption is decided under the version in force at each
earning's instant, as known when it is decided — the points ``state`` gives then.

10,000.00 deposited at T earns 100 points under the shipped policy (unit 100), vested 30 days later; a version
of unit 200 in force at T makes it 50, one of unit 50 makes it 200. Its boundary is the deposit's instant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.factories import deposit, event, registered
from tests.support.instants import utc
from timeline.application.policy_store import PolicyStream
from timeline.domain.policy import Policy, load_policy

BASE = load_policy()
REGISTERED = "2025-01-01T09:00:00+08:00"
T = "2025-01-02T09:00:00+08:00"
JUST_AFTER_T = "2025-01-02T09:00:00.000001+08:00"
R = "2025-03-01T09:00:00+08:00"
"""The redemptions' instant: after the deposit's vesting under every version here."""
PUBLISHED = "2029-06-01T00:00:00+08:00"


def version(policy_id: str, unit: str) -> Policy:
    data = BASE.model_dump(mode="json")
    data["id"] = policy_id
    data["points"]["deposit_unit"] = unit
    return Policy.model_validate(data)


def publish(branch, policy: Policy, effective_from: str) -> None:
    PolicyStream(branch.engine.store, branch.engine.policy).publish(policy, utc(effective_from), utc(PUBLISHED))


def redeem(points: int, at: str = R) -> dict[str, Any]:
    return event("points.redeemed", "C1", at, {"points": points, "reward": "rice cooker"})


@pytest.fixture
def deposited(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="10000.00"))
    return branch


def test_a_lower_rate_in_force_at_the_deposit_refuses_what_the_shipped_policy_accepts(deposited):
    publish(deposited, version("lean", "200"), effective_from=T)

    assert deposited.reject(redeem(80)) == "cannot redeem 80 points: 50 available at 2025-03-01T09:00:00+08:00"
    assert deposited.state(as_of=R).points.available == 50
    deposited.accept(redeem(50))


def test_a_lower_rate_from_just_after_the_deposit_leaves_it_to_the_shipped_policy(deposited):
    publish(deposited, version("lean", "200"), effective_from=JUST_AFTER_T)

    deposited.accept(redeem(80))
    assert deposited.state(as_of=R).points.available == 20


def test_a_higher_rate_in_force_at_the_deposit_accepts_what_the_shipped_policy_refuses(deposited):
    assert deposited.reject(redeem(150)) == "cannot redeem 150 points: 100 available at 2025-03-01T09:00:00+08:00"
    publish(deposited, version("rich", "50"), effective_from=T)

    deposited.accept(redeem(150))
    assert deposited.state(as_of=R).points.available == 50


def test_a_higher_rate_from_just_after_the_deposit_leaves_it_to_the_shipped_policy(deposited):
    publish(deposited, version("rich", "50"), effective_from=JUST_AFTER_T)

    assert deposited.reject(redeem(150)) == "cannot redeem 150 points: 100 available at 2025-03-01T09:00:00+08:00"


def test_a_version_recorded_after_the_decision_is_not_yet_in_force(deposited):
    """Published at PUBLISHED: an event recorded before then is decided as ``state --known-at`` it would be."""
    publish(deposited, version("rich", "50"), effective_from=T)

    deposited.recording_at("2029-05-31T23:59:59+08:00")
    assert deposited.reject(redeem(150)) == "cannot redeem 150 points: 100 available at 2025-03-01T09:00:00+08:00"
    deposited.recording_at(PUBLISHED).accept(redeem(150))


@pytest.mark.backends("memory", "sqlite", "postgres")
def test_a_running_ingest_decides_under_a_version_published_since_its_last_batch(deposited):
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ingestor = deposited.engine.ingestor(clock=lambda: now)
    [refused] = ingestor.ingest([(1, redeem(150))])
    assert refused.status == "rejected"

    publish(deposited, version("rich", "50"), effective_from=T)

    [accepted] = ingestor.ingest([(2, redeem(150))])
    assert accepted.status == "accepted"
