"""What-if: every customer folded under the current policy versions and under a candidate, and the difference.

The current side is the store's versions in force (the base policy, then every
published version) as known at ``known_at``; the candidate side is the same
versions up to the candidate's ``from``, then the candidate for ever
(:meth:`~timeline.domain.policy_versions.PolicyTimeline.with_candidate`; no
``from``: the candidate from the beginning). Nothing is written. Each stream
is read and decoded once and folded twice (the projections are pure: the same
events, two timelines), on every core as ``state --all`` is
(:mod:`timeline.application.sharded`). A customer differs
when their tier, lifecycle stage or points differ; the summary is what a
product manager weighs before a change: tier moves, who enters or leaves
at-risk, the points the bank owes (its liability), customers per tier.

Referral qualifications are stored events, decided under the policy in force
when they were recorded: a candidate's ``referral`` numbers do not decide them
again here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from timeline.application.codec import decode
from timeline.application.policy_store import PolicyStream
from timeline.application.ports import EventStore
from timeline.application.sharded import over_customers
from timeline.application.states import state_of
from timeline.domain.errors import TimelineError, UnknownCustomer
from timeline.domain.instants import parse_instant
from timeline.domain.policy import Policy, succession_conflict
from timeline.domain.policy_errors import InvalidPolicy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import iso
from timeline.domain.types import Stage
from timeline.projections.state import CustomerState


@dataclass(frozen=True, slots=True)
class Question:
    """What is asked: the candidate, in force from ``effective_from`` (None: the beginning), and of whom."""

    candidate: Policy
    as_of: dt.datetime
    known_at: dt.datetime
    effective_from: dt.datetime | None = None
    branch: str | None = None
    """Only the customers of this branch (their assignment as of ``as_of``)."""


@dataclass(frozen=True, slots=True)
class Side:
    """One customer under one policy: the answers that can differ, each with the rule that decided it."""

    policy: str
    tier: str
    tier_rule: str
    tier_reason: str
    lifecycle: str
    lifecycle_rule: str
    lifecycle_reason: str
    points: int
    points_rules: tuple[tuple[str, int], ...]
    """Points by the rule of the ledger lines that made them (earnings, expiries, redemptions)."""
    aum: Decimal

    @classmethod
    def of(cls, state: CustomerState) -> Side:
        by_rule: Counter[str] = Counter()
        for line in state.points.ledger:
            by_rule[str(line.rule)] += line.points
        return cls(
            policy=state.policy,
            tier=state.tier.tier,
            tier_rule=str(state.tier.rule),
            tier_reason=state.tier.reason,
            lifecycle=str(state.lifecycle.stage),
            lifecycle_rule=state.lifecycle.rule,
            lifecycle_reason=state.lifecycle.reason,
            points=state.points.available,
            points_rules=tuple(by_rule.items()),
            aum=state.aum,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "tier": self.tier,
            "tier_rule": self.tier_rule,
            "tier_reason": self.tier_reason,
            "lifecycle": self.lifecycle,
            "lifecycle_rule": self.lifecycle_rule,
            "lifecycle_reason": self.lifecycle_reason,
            "points": self.points,
            "points_rules": dict(self.points_rules),
            "aum": f"{self.aum:.2f}",
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    customer_id: str
    branch_id: str | None
    current: Side
    candidate: Side

    @property
    def differs(self) -> bool:
        a, b = self.current, self.candidate
        return (a.tier, a.lifecycle, a.points) != (b.tier, b.lifecycle, b.points)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "branch_id": self.branch_id,
            "current": self.current.to_json(),
            "candidate": self.candidate.to_json(),
        }


@dataclass
class Tally:
    """The summary's counts, added up range by range (a worker's tally is merged into the whole)."""

    customers: int = 0
    differing: int = 0
    tier_moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    entering_at_risk: int = 0
    leaving_at_risk: int = 0
    points_current: int = 0
    points_candidate: int = 0
    tiers_current: Counter[str] = field(default_factory=Counter)
    tiers_candidate: Counter[str] = field(default_factory=Counter)
    stages_current: Counter[str] = field(default_factory=Counter)
    stages_candidate: Counter[str] = field(default_factory=Counter)

    def add(self, c: Comparison) -> None:
        a, b = c.current, c.candidate
        self.customers += 1
        self.differing += c.differs
        if a.tier != b.tier:
            self.tier_moves[a.tier, b.tier] += 1
        at_risk = Stage.AT_RISK.value
        self.entering_at_risk += a.lifecycle != at_risk and b.lifecycle == at_risk
        self.leaving_at_risk += a.lifecycle == at_risk and b.lifecycle != at_risk
        self.points_current += a.points
        self.points_candidate += b.points
        self.tiers_current[a.tier] += 1
        self.tiers_candidate[b.tier] += 1
        self.stages_current[a.lifecycle] += 1
        self.stages_candidate[b.lifecycle] += 1

    def merge(self, other: Tally) -> None:
        for name in ("customers", "differing", "entering_at_risk", "leaving_at_risk"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.points_current += other.points_current
        self.points_candidate += other.points_candidate
        for name in ("tier_moves", "tiers_current", "tiers_candidate", "stages_current", "stages_candidate"):
            getattr(self, name).update(getattr(other, name))


@dataclass(frozen=True)
class Report:
    """The customers who differ, in customer order, and the summary over every customer compared."""

    question: Question
    current: Policy
    """The version in force at ``as_of`` on the current side (its tiers order the summary)."""
    candidate: Policy
    """The version in force at ``as_of`` on the candidate side (the current one if ``from`` is later)."""
    differing: list[Comparison]
    tally: Tally

    def summary_json(self) -> dict[str, Any]:
        t, current, candidate = self.tally, self.current, self.candidate
        current_rank = {level.name: i for i, level in enumerate(current.tier.tiers)}
        candidate_rank = {level.name: i for i, level in enumerate(candidate.tier.tiers)}
        moves = sorted(
            t.tier_moves.items(), key=lambda m: (current_rank.get(m[0][0], 99), candidate_rank.get(m[0][1], 99))
        )
        return {
            "customers": t.customers,
            "differing": t.differing,
            "tier_moves": [{"from": a, "to": b, "customers": n} for (a, b), n in moves],
            "entering_at_risk": t.entering_at_risk,
            "leaving_at_risk": t.leaving_at_risk,
            "points_outstanding": {"current": t.points_current, "candidate": t.points_candidate},
            "tiers": {
                "current": _counts(t.tiers_current, [level.name for level in current.tier.tiers]),
                "candidate": _counts(t.tiers_candidate, [level.name for level in candidate.tier.tiers]),
            },
            "lifecycle": {
                "current": _counts(t.stages_current, [s.value for s in Stage]),
                "candidate": _counts(t.stages_candidate, [s.value for s in Stage]),
            },
        }

    def to_json(self) -> dict[str, Any]:
        """The whole answer as one object: ``POST /v1/whatif``."""
        q = self.question
        return {
            "current_policy": self.current.id,
            "candidate_policy": q.candidate.id,
            "from": iso(q.effective_from) if q.effective_from else None,
            "as_of": iso(q.as_of),
            "known_at": iso(q.known_at),
            "branch": q.branch,
            "customers": [c.to_json() for c in self.differing],
            "summary": self.summary_json(),
        }


def _counts(counter: Counter[str], order: Iterable[str]) -> dict[str, int]:
    """Every name of ``order`` (zeros included), then any other name seen, by name."""
    names = list(order)
    return {name: counter.get(name, 0) for name in [*names, *sorted(set(counter) - set(names))]}


def effective_from(text: str, time_zone: str) -> dt.datetime:
    """A candidate's ``from``: an instant with its offset, or a date meaning its first instant in the zone.

    (``--as-of DATE`` means the day's end, every event of it counted; a rule "from 1 April" is in force all
    of 1 April.)
    """
    text = text.strip()
    if len(text) == 10:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise TimelineError(f"{text!r} is not a date (YYYY-MM-DD) or an instant with offset") from None
        return dt.datetime.combine(day, dt.time(), ZoneInfo(time_zone)).astimezone(dt.UTC)
    return parse_instant(text, time_zone, dt.datetime.now(dt.UTC))


def what_if(
    store: EventStore,
    base: Policy,
    question: Question,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Fold every customer under the store's versions (over ``base``) and under the candidate; nothing is written."""
    current = PolicyStream(store, base).timeline().known_at(question.known_at)
    candidate = current.with_candidate(question.candidate, question.effective_from)
    for version in candidate.versions[:-1]:  # those it follows: none when it is in force from the beginning
        conflict = succession_conflict(version.policy, question.candidate)
        if conflict:
            raise InvalidPolicy(f"the candidate cannot follow the versions in force: {conflict}")
    work = partial(_compare_range, current, candidate, question)
    differing: list[Comparison] = []
    tally = Tally()
    for found, part in over_customers(store, work, workers, progress):
        differing.extend(found)
        tally.merge(part)
    return Report(question, current.at(question.as_of), candidate.at(question.as_of), differing, tally)


def _compare_range(
    current: PolicyTimeline,
    candidate: PolicyTimeline,
    question: Question,
    store: EventStore,
    customer_ids: list[str],
) -> tuple[int, tuple[list[Comparison], Tally]]:
    """Read these customers' streams (batched), decode each once and fold it twice."""
    rows = store.read_streams(customer_ids)
    events = 0
    differing: list[Comparison] = []
    tally = Tally()
    q = question
    for customer_id in customer_ids:
        history = [decode(row, None, False, with_hash=False) for row in rows[customer_id]]
        events += len(history)
        try:
            now = state_of(history, current, q.as_of, q.known_at)
        except UnknownCustomer:
            continue
        if q.branch is not None and now.assignment.branch_id != q.branch:
            continue
        then = state_of(history, candidate, q.as_of, q.known_at)
        comparison = Comparison(customer_id, now.assignment.branch_id, Side.of(now), Side.of(then))
        tally.add(comparison)
        if comparison.differs:
            differing.append(comparison)
    return events, (differing, tally)
