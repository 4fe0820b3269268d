"""Policy versions over business time, as known over system time (issue 13).

A bank changes its rules by publishing a new version with the business
instant it takes effect from. Every decision at a business instant t uses the
version in force at t; asked as known at a system time K, only versions
recorded by K exist. Two rules settle every overlap:

- versions are in force in order of ``effective_from``: a version is in force
  from its ``effective_from`` until the next version's. A later publish with
  an earlier effective date is slotted in by that date: it replaces the
  version that was in force there only until the next effective date, and
  leaves the versions effective after it alone;
- two versions with the same ``effective_from``: the one recorded later wins
  (a republish of a date corrects it); the earlier one is never in force.

The shipped policy is in force from the beginning of time until a store
publishes another (:meth:`PolicyTimeline.single`).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from dataclasses import dataclass

from timeline.domain.instants import EARLIEST
from timeline.domain.policy import Policy

BEGINNING = EARLIEST
"""The effective and recorded instant of the version a store starts with: before every event."""


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    policy: Policy
    effective_from: dt.datetime
    recorded_at: dt.datetime

    @property
    def id(self) -> str:
        return self.policy.id


@dataclass(frozen=True)
class PolicyTimeline:
    """The versions, ordered by ``effective_from`` and then ``recorded_at``; the first from the beginning."""

    versions: tuple[PolicyVersion, ...]

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError("a policy timeline needs at least one version")
        ordered = tuple(sorted(self.versions, key=_order))
        if ordered[0].effective_from != BEGINNING:
            raise ValueError("the first policy version must be in force from the beginning")
        object.__setattr__(self, "versions", ordered)
        object.__setattr__(self, "_starts", tuple(v.effective_from for v in ordered))
        forced: list[PolicyVersion] = []
        for version in ordered:
            if forced and forced[-1].effective_from == version.effective_from:
                forced[-1] = version
            else:
                forced.append(version)
        object.__setattr__(self, "_forced", tuple(forced))

    @classmethod
    def single(cls, policy: Policy) -> PolicyTimeline:
        """``policy`` in force from the beginning, for ever (a store that never published one)."""
        return cls((PolicyVersion(policy, BEGINNING, BEGINNING),))

    @classmethod
    def of(cls, policy: Policy | PolicyTimeline) -> PolicyTimeline:
        """A timeline as given, or a plain policy wrapped with :meth:`single` (callers that know one)."""
        return policy if isinstance(policy, PolicyTimeline) else cls.single(policy)

    @property
    def is_single(self) -> bool:
        """One version in force at every instant: the projections' fast path."""
        return len(self.versions) == 1

    @property
    def first(self) -> Policy:
        return self.versions[0].policy

    @property
    def latest(self) -> Policy:
        """The version in force at the end of business time."""
        return self.versions[-1].policy

    def version_at(self, t: dt.datetime) -> PolicyVersion:
        """The version in force at business instant ``t`` (the last one effective at or before it)."""
        return self.versions[bisect_right(self._starts, t) - 1]  # type: ignore[attr-defined]

    def at(self, t: dt.datetime) -> Policy:
        """The policy in force at business instant ``t``."""
        return self.version_at(t).policy

    def known_at(self, k: dt.datetime) -> PolicyTimeline:
        """Only the versions recorded at or before system time ``k`` (the first one always)."""
        if all(v.recorded_at <= k for v in self.versions):
            return self
        return PolicyTimeline(tuple(v for v in self.versions if v.recorded_at <= k or v.effective_from == BEGINNING))

    def with_candidate(self, policy: Policy, effective_from: dt.datetime | None) -> PolicyTimeline:
        """These versions up to ``effective_from``, then ``policy`` for ever (from the beginning if None).

        What-if: the candidate replaces every version effective at or after its date.
        """
        start = BEGINNING if effective_from is None else effective_from
        before = tuple(v for v in self.versions if v.effective_from < start)
        recorded = max(v.recorded_at for v in self.versions)
        return PolicyTimeline((*before, PolicyVersion(policy, start, recorded)))

    def boundaries(self) -> tuple[dt.datetime, ...]:
        """The effective instants after the first, ascending: where the version in force changes."""
        return tuple(v.effective_from for v in self.in_force()[1:])

    def in_force(self) -> tuple[PolicyVersion, ...]:
        """The versions that are in force over some business time, in that order (a version superseded at its
        own effective instant by a later-recorded one is left out)."""
        return self._forced  # type: ignore[attr-defined,no-any-return]

    def spans(self, start: dt.datetime, end: dt.datetime) -> tuple[PolicyVersion, ...]:
        """The versions in force at some instant of [start, end], in business order."""
        return tuple(v for v in self.in_force() if v.effective_from <= end and self._until(v) > start)

    def next_boundary(self, t: dt.datetime) -> dt.datetime | None:
        """The first effective instant after ``t`` at which the version in force changes, if any."""
        for moment in self.boundaries():
            if moment > t:
                return moment
        return None

    def _until(self, version: PolicyVersion) -> dt.datetime:
        forced = self.in_force()
        index = forced.index(version)
        return forced[index + 1].effective_from if index + 1 < len(forced) else dt.datetime.max.replace(tzinfo=dt.UTC)


def _order(version: PolicyVersion) -> tuple[dt.datetime, dt.datetime]:
    return version.effective_from, version.recorded_at
