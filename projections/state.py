"""A customer's whole state as of business time Q, as known at system time K, with reasons.

The one entry point that composes the per-concern folds: which events count
(``counted``), balances and AUM (``balances``), tier, lifecycle, points and
follow-ups. Pure: history in, state out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from projections.balances import balances
from projections.counted import counted
from projections.followups import Assignment, Followup, assignment_as_of, open_followups
from projections.lifecycle import Facts, StageResult, lifecycle_as_of, lifecycle_candidates
from projections.points import PointsResult, point_items, settle
from projections.policy import Policy
from projections.tier import TierResult, tier_changes, tier_from_changes
from timeline.errors import UnknownCustomer
from timeline.recorded import RecordedEvent, iso

MAX_PROBES = 40


@dataclass(frozen=True, slots=True)
class CustomerState:
    customer_id: str
    as_of: dt.datetime
    known_at: dt.datetime
    policy: str
    registered_at: dt.datetime
    assignment: Assignment
    aum: Decimal
    balances: dict[str, Decimal]
    tier: TierResult
    lifecycle: StageResult
    points: PointsResult
    followups: tuple[Followup, ...]
    last_activity_at: dt.datetime | None
    qualified_referrals: int
    erased: bool
    next_change_at: dt.datetime | None
    """The next instant at which time alone (no new event) changes tier, stage or points."""

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "as_of": iso(self.as_of),
            "known_at": iso(self.known_at),
            "policy": self.policy,
            "tier": self.tier.tier,
            "lifecycle": self.lifecycle.stage,
            "points": self.points.available,
            "aum": f"{self.aum:.2f}",
            "branch_id": self.assignment.branch_id,
            "relationship_manager": self.assignment.relationship_manager,
            "last_activity_at": iso(self.last_activity_at) if self.last_activity_at else None,
            "erased": self.erased,
            "next_change_at": iso(self.next_change_at) if self.next_change_at else None,
        }

    def explain_json(self) -> dict[str, Any]:
        tier, stage, points = self.tier, self.lifecycle, self.points
        return {
            **self.to_json(),
            "balances": {account: f"{value:.2f}" for account, value in sorted(self.balances.items())},
            "tier_explained": {
                "tier": tier.tier,
                "since": iso(tier.since),
                "rule": tier.rule,
                "reason": tier.reason,
                "event_ids": [str(e) for e in tier.event_ids],
                "pending": _change_json(tier.pending) if tier.pending else None,
                "changes": [_change_json(c) for c in tier.changes],
            },
            "lifecycle_explained": {
                "stage": stage.stage,
                "rule": stage.rule,
                "reason": stage.reason,
                "event_ids": [str(e) for e in stage.event_ids],
            },
            "points_explained": {
                "available": points.available,
                "buckets": {str(year): left for year, left in points.buckets.items()},
                "overdraft": points.overdraft,
                "ledger": [
                    {
                        "at": iso(line.at),
                        "kind": line.kind,
                        "points": line.points,
                        "bucket": line.bucket,
                        "event_ids": [str(e) for e in line.event_ids],
                        "note": line.note,
                    }
                    for line in points.ledger
                ],
                "pending": [
                    {"vests_at": iso(p.vests_at), "points_if_held": p.points_if_held, "event_id": str(p.event_id)}
                    for p in points.pending
                ],
            },
            "followups": [f.to_json() for f in self.followups],
        }


def _change_json(change: Any) -> dict[str, Any]:
    return {
        "at": iso(change.at),
        "from": change.from_tier,
        "to": change.to_tier,
        "rule": change.rule,
        "reason": change.reason,
        "event_ids": [str(e) for e in change.event_ids],
    }


def customer_state(
    history: Sequence[RecordedEvent], policy: Policy, as_of: dt.datetime, known_at: dt.datetime
) -> CustomerState:
    """State at business time ``as_of`` from the events of ``history`` recorded by ``known_at``."""
    events = counted(history, known_at).as_of(as_of)
    if not events or events[0].type != "customer.registered":
        customer = history[0].customer_id if history else "?"
        raise UnknownCustomer(f"customer {customer} is not registered as of {iso(as_of)} as known at {iso(known_at)}")
    return Projection(events, policy).at(as_of, known_at)


class Projection:
    """What a customer's counted events imply at every instant from the last of them on.

    Built once (balances, the whole tier simulation, every earning and
    redemption), then asked at any business time at or after the last event in
    little more than a binary search: this is what makes asking again cheap
    (``timeline.states`` keeps one per stream version).
    """

    def __init__(self, events: Sequence[RecordedEvent], policy: Policy) -> None:
        self.events = events
        self.policy = policy
        self.registration = events[0]
        self.horizon = events[-1].occurred_at
        self.money = balances(events)
        self.tier_changes = tier_changes(self.money.aum, policy.tier)
        self.point_items = point_items(events, self.money.accounts, policy)
        self.facts = Facts.of(events)
        self.assignment = assignment_as_of(events)
        self.erased = any(e.type == "customer.erased" for e in events)

    def at(self, as_of: dt.datetime, known_at: dt.datetime) -> CustomerState:
        if as_of < self.horizon:
            raise ValueError(f"a projection up to {iso(self.horizon)} cannot answer as of {iso(as_of)}")
        policy, money, registration = self.policy, self.money, self.registration
        tier = tier_from_changes(self.tier_changes, registration.occurred_at, registration.event_id, policy.tier, as_of)
        stage = lifecycle_as_of(self.facts, money.aum, policy.tier.rank(tier.tier), policy, as_of)
        points = settle(self.point_items, policy, as_of)
        last_activity = self.facts.last_activity
        upcoming = [
            m for m in (tier.next_change_at, points.next_change_at, self._next_stage_change(tier, stage, as_of)) if m
        ]
        return CustomerState(
            customer_id=registration.customer_id,
            as_of=as_of,
            known_at=known_at,
            policy=policy.id,
            registered_at=registration.occurred_at,
            assignment=self.assignment,
            aum=money.aum.at(as_of),
            balances={account: line.at(as_of) for account, line in money.accounts.items()},
            tier=tier,
            lifecycle=stage,
            points=points,
            followups=tuple(open_followups(self.events, policy, as_of)),
            last_activity_at=last_activity.occurred_at if last_activity else None,
            qualified_referrals=len(self.facts.qualified),
            erased=self.erased,
            next_change_at=min(upcoming) if upcoming else None,
        )

    def _next_stage_change(self, tier: TierResult, stage: StageResult, as_of: dt.datetime) -> dt.datetime | None:
        policy = self.policy
        current_rank = policy.tier.rank(tier.tier)
        for moment in lifecycle_candidates(self.events, self.money.aum, policy, as_of)[:MAX_PROBES]:
            rank = current_rank
            for change in self.tier_changes:
                if as_of < change.at <= moment:
                    rank = policy.tier.rank(change.to_tier)
            if lifecycle_as_of(self.facts, self.money.aum, rank, policy, moment).stage != stage.stage:
                return moment
        return None
