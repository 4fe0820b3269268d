"""Policy versions over business time, as known over system time (issue 13, the domain type)."""

from __future__ import annotations

import datetime as dt

import pytest

from timeline.domain.policy import Policy, load_policy
from timeline.domain.policy_versions import BEGINNING, PolicyTimeline, PolicyVersion

BASE = load_policy()
T0 = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
SECOND = dt.timedelta(microseconds=1)


def variant(policy_id: str, hold: int = 7) -> Policy:
    data = BASE.model_dump(mode="json")
    data["id"] = policy_id
    data["tier"]["upgrade_hold_days"] = hold
    return Policy.model_validate(data)


def timeline(*versions: tuple[Policy, dt.datetime, dt.datetime]) -> PolicyTimeline:
    return PolicyTimeline(
        (PolicyVersion(BASE, BEGINNING, BEGINNING), *(PolicyVersion(p, e, r) for p, e, r in versions))
    )


def test_the_shipped_policy_is_in_force_from_the_beginning_until_another_is_published() -> None:
    single = PolicyTimeline.single(BASE)
    assert single.is_single and single.at(BEGINNING) is BASE and single.at(T1) is BASE
    assert single.boundaries() == ()
    assert PolicyTimeline.of(BASE) == single and PolicyTimeline.of(single) is single


def test_a_version_is_in_force_from_its_effective_instant_on() -> None:
    v2 = variant("v2")
    versions = timeline((v2, T0, T1))
    assert versions.at(T0 - SECOND) is BASE
    assert versions.at(T0) is v2
    assert versions.boundaries() == (T0,)
    assert versions.next_boundary(T0 - SECOND) == T0 and versions.next_boundary(T0) is None


def test_two_versions_of_one_effective_instant_the_later_recorded_wins() -> None:
    first, second = variant("first"), variant("second")
    versions = timeline((second, T0, T1 + SECOND), (first, T0, T1))
    assert versions.at(T0) is second
    assert versions.known_at(T1).at(T0) is first
    assert versions.boundaries() == (T0,)


def test_a_later_publish_with_an_earlier_date_is_in_force_only_until_the_next_effective_date() -> None:
    later_date, earlier_date = variant("later-date"), variant("earlier-date")
    versions = timeline((later_date, T1, T0), (earlier_date, T0, T1))
    assert versions.at(T0 - SECOND) is BASE
    assert versions.at(T0) is earlier_date and versions.at(T1 - SECOND) is earlier_date
    assert versions.at(T1) is later_date
    assert versions.known_at(T1 - SECOND).at(T0) is BASE


def test_known_at_keeps_only_the_versions_recorded_by_then() -> None:
    v2 = variant("v2")
    versions = timeline((v2, T0, T1))
    assert versions.known_at(T1) is versions
    assert versions.known_at(T1 - SECOND).is_single


def test_a_candidate_replaces_every_version_effective_at_or_after_its_date() -> None:
    v2, candidate = variant("v2"), variant("candidate")
    versions = timeline((v2, T1, T0))
    assert versions.with_candidate(candidate, None).is_single
    assert versions.with_candidate(candidate, None).at(T1) is candidate
    mixed = versions.with_candidate(candidate, T0)
    assert [v.id for v in mixed.versions] == [BASE.id, "candidate"] and mixed.at(T1) is candidate


def test_the_first_version_must_be_in_force_from_the_beginning() -> None:
    with pytest.raises(ValueError, match="beginning"):
        PolicyTimeline((PolicyVersion(BASE, T0, T0),))
