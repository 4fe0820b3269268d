"""State under policy versions (issue 13): every spanning rule of docs/POLICY.md at its boundary instants.

Each scenario publishes a version on the in-memory store (the policy stream)
and asks the state at the instants around its effective date. Instants in
+08:00 (the policy's zone), durations exact.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.factories import deposit, event, registered, visit, withdrawal
from tests.support.instants import at
from tests.support.instants import utc as instant
from timeline.application.policy_store import PolicyStream
from timeline.domain.errors import TimelineError
from timeline.domain.policy import Policy, load_policy

BASE = load_policy()
REGISTERED = "2025-01-01T09:00:00+08:00"
T = "2025-01-02T09:00:00+08:00"
B = "2025-03-01T00:00:00+08:00"  # the new version's effective instant in most scenarios
PUBLISHED = "2029-06-01T00:00:00+08:00"  # after every business time, before the branch's "now" (2030)
JUST_BEFORE = dt.timedelta(microseconds=1)


def version(policy_id: str, **changes: Any) -> Policy:
    """The shipped policy with ``changes`` (``"tier.downgrade_grace_days": 30``, ``"tier.tiers.1.threshold"``)."""
    data = BASE.model_dump(mode="json")
    data["id"] = policy_id
    for path, value in changes.items():
        *parents, last = path.replace("__", ".").split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return Policy.model_validate(data)


def publish(branch, policy: Policy, effective_from: str = B, recorded_at: str = PUBLISHED) -> None:
    PolicyStream(branch.engine.store, branch.engine.policy).publish(
        policy, instant(effective_from), instant(recorded_at)
    )


def accept_early(branch, *events: dict) -> None:
    """Accept ``events`` recorded before the version is published (so that "as known before" sees them)."""
    branch.recording_at("2029-01-01T00:00:00+08:00").accept(*events)
    branch.recording_at("2030-01-01T00:00:00+08:00")


def before(moment: str) -> str:
    return (instant(moment) - JUST_BEFORE).isoformat()


def tier_at(branch, as_of: str, known_at: str | None = None) -> str:
    return branch.state("C1", as_of=as_of, known_at=known_at).tier.tier


# --- tier ------------------------------------------------------------------------------------------------------------


def test_a_raised_threshold_makes_a_downgrade_pending_at_the_effective_instant(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="60000.00"))
    publish(branch, version("raised", **{"tier.tiers.1.threshold": "80000", "tier.downgrade_grace_days": 30}))

    assert tier_at(branch, before(B)) == "affluent"
    pending = branch.state(as_of=B).tier.pending
    assert pending is not None and pending.at == instant(at(B, days=30)) and pending.to_tier == "mass"
    assert tier_at(branch, before(at(B, days=30))) == "affluent"
    assert tier_at(branch, at(B, days=30)) == "mass"
    assert branch.state(as_of=at(B, days=30)).tier.changes[-1].policy == "raised"


def test_a_running_hold_is_judged_by_the_hold_in_force_at_each_instant(branch):
    """A 7-day hold shortened to 3 days at B: AUM held since B − 5 days upgrades at B itself."""
    branch.accept(registered(at=REGISTERED), deposit(at=at(B, days=-5), amount="50000.00"))
    publish(branch, version("short-hold", **{"tier.upgrade_hold_days": 3}))

    assert tier_at(branch, before(B)) == "mass"
    assert tier_at(branch, B) == "affluent"
    assert branch.state(as_of=B).tier.changes[-1].policy == "short-hold"


def test_a_lengthened_hold_delays_an_upgrade_not_yet_made(branch):
    """7 days lengthened to 14 at B: AUM raised at B − 5 days upgrades at its 14th day, not its 7th."""
    branch.accept(registered(at=REGISTERED), deposit(at=at(B, days=-5), amount="50000.00"))
    publish(branch, version("long-hold", **{"tier.upgrade_hold_days": 14}))

    assert tier_at(branch, at(B, days=2)) == "mass"
    assert tier_at(branch, before(at(B, days=9))) == "mass"
    assert tier_at(branch, at(B, days=9)) == "affluent"


def test_a_pending_downgrade_keeps_the_grace_period_in_force_when_it_began(branch):
    """Pending from B − 10 days under 90 days of grace; a 30-day grace from B does not shorten it."""
    t0 = at(B, days=-10)
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="60000.00"), withdrawal(at=t0, amount="20000.00"))
    publish(branch, version("short-grace", **{"tier.downgrade_grace_days": 30}))

    assert tier_at(branch, at(t0, days=30)) == "affluent"
    assert tier_at(branch, before(at(t0, days=90))) == "affluent"
    assert tier_at(branch, at(t0, days=90)) == "mass"


def test_a_lowered_threshold_cancels_a_pending_downgrade_at_the_effective_instant(branch):
    t0 = at(B, days=-10)
    accept_early(
        branch, registered(at=REGISTERED), deposit(at=T, amount="60000.00"), withdrawal(at=t0, amount="20000.00")
    )
    publish(branch, version("lowered", **{"tier.tiers.1.threshold": "40000"}))

    assert branch.state(as_of=before(B), known_at=before(PUBLISHED)).tier.pending.at == instant(at(t0, days=90))
    assert branch.state(as_of=before(B)).tier.pending is None  # what time alone brings: nothing, B cancels it
    assert tier_at(branch, at(t0, days=90)) == "affluent"


# --- points ----------------------------------------------------------------------------------------------------------


def test_a_deposit_earns_under_the_version_in_force_when_it_was_made(branch):
    """10,000 at B − 1 µs earns 100 (unit 100); the same at B earns 200 (unit 50); each after its own hold."""
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=before(B), amount="10000.00", account_id="A1"),
        deposit(at=B, amount="10000.00", account_id="A2"),
    )
    publish(branch, version("richer", **{"points.deposit_unit": "50", "points.deposit_hold_days": 10}))

    assert branch.state(as_of=before(at(B, days=10))).points.available == 0
    assert branch.state(as_of=at(B, days=10)).points.available == 200
    assert branch.state(as_of=before(at(before(B), days=30))).points.available == 200
    points = branch.state(as_of=at(before(B), days=30)).points
    assert points.available == 300
    assert [(line.points, line.policy) for line in points.ledger] == [(200, "richer"), (100, BASE.id)]


def test_an_earning_at_its_instant_uses_the_rate_in_force_then(branch):
    survey = "survey.completed"
    branch.accept(
        registered(at=REGISTERED),
        event(survey, "C1", before(B), {"score": 5}),
        event(survey, "C1", at(B, days=31), {"score": 5}),
    )
    publish(branch, version("survey-50", **{"points.survey": 50}))

    assert branch.state(as_of=at(B, days=31)).points.available == 20 + 50


def test_a_bucket_keeps_the_expiry_of_the_version_in_force_when_it_was_opened(branch):
    """Expiry shortened from 3 years to 1 at B (2025-03-01): the 2025 bucket, opened in January under
    3 years, expires at the start of 2028; the 2026 bucket, opened under 1 year, at the start of 2027."""
    greeting = "greeting.sent"
    branch.accept(
        registered(at=REGISTERED),
        event(greeting, "C1", "2025-01-10T09:00:00+08:00", {"occasion": "birthday", "channel": "sms"}),
        event(greeting, "C1", "2026-01-10T09:00:00+08:00", {"occasion": "birthday", "channel": "sms"}),
    )
    publish(branch, version("one-year", **{"points.expiry_years": 1}))

    assert branch.state(as_of=before("2027-01-01T00:00:00+08:00")).points.available == 200
    assert branch.state(as_of="2027-01-01T00:00:00+08:00").points.available == 100
    assert branch.state(as_of=before("2028-01-01T00:00:00+08:00")).points.available == 100
    assert branch.state(as_of="2028-01-01T00:00:00+08:00").points.available == 0


# --- lifecycle, next_change_at, names --------------------------------------------------------------------------------


def test_a_shorter_silence_window_puts_a_customer_at_risk_from_the_effective_instant(branch):
    """Silence 180 days shortened to 90 at B: the last activity B − 100 days is silent enough at B."""
    first = at(B, days=-200)
    branch.accept(registered(at=at(first, days=-1)), deposit(at=first, amount="20000.00"), visit(at=at(B, days=-100)))
    publish(branch, version("short-silence", **{"lifecycle.silence_days": 90}))

    assert branch.state(as_of=before(B)).lifecycle.stage == "established"
    assert branch.state(as_of=before(B)).next_change_at == instant(B)
    at_b = branch.state(as_of=B)
    assert at_b.lifecycle.stage == "at_risk" and at_b.policy == "short-silence"
    assert at_b.explain_json()["lifecycle_explained"]["policy"] == "short-silence"


def test_state_names_the_version_in_force_at_as_of(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="1000.00"))
    publish(branch, version("v2"))

    assert branch.state(as_of=before(B)).to_json()["policy"] == BASE.id
    assert branch.state(as_of=B).to_json()["policy"] == "v2"


def test_asked_as_known_before_the_publish_the_answer_is_what_it_was(branch):
    accept_early(branch, registered(at=REGISTERED), deposit(at=T, amount="60000.00"))
    publish(branch, version("raised", **{"tier.tiers.1.threshold": "80000"}))

    assert tier_at(branch, "2026-01-01T00:00:00+08:00", known_at=before(PUBLISHED)) == "affluent"
    assert branch.state(as_of="2026-01-01T00:00:00+08:00", known_at=before(PUBLISHED)).policy == BASE.id
    assert tier_at(branch, "2026-01-01T00:00:00+08:00") == "mass"


# --- publishing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": BASE.id}, "already published"),
        ({"time_zone": "Europe/Paris"}, "time_zone"),
        ({"tier.tiers.3.name": "gold"}, r"tier\.tiers\[3\]\.name: \"gold\" differs"),
    ],
)
def test_a_version_that_cannot_be_published_is_refused_and_nothing_is_stored(branch, changes, message):
    policy_id = changes.pop("id", "fine-id")
    with pytest.raises(TimelineError, match=message):
        publish(branch, version(policy_id, **changes))
    assert PolicyStream(branch.engine.store, BASE).entries() == []


def test_a_published_version_is_chained_and_verify_names_a_gap(branch):
    publish(branch, version("v2"))
    publish(branch, version("v3"), effective_from="2025-06-01T00:00:00+08:00")
    stream = PolicyStream(branch.engine.store, BASE)
    first, second = stream.entries()
    assert second.prev_hash == first.hash
    assert PolicyStream.verify_store(branch.engine.store) == []
    with pytest.raises(TimelineError, match="already published"):
        publish(branch, version("v3"))
