"""A customer's whole state as of business time Q, as known at system time K, with reasons.

The one entry point that composes the per-concern folds: which events count
(``counted``), balances and AUM (``balances``), tier, lifecycle, points and
follow-ups. Pure: history in, state out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from timeline.domain.errors import UnknownCustomer
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent, iso
from timeline.domain.rule_docs import link
from timeline.domain.types import EventType
from timeline.projections.balances import MONEY_TYPES, Balances
from timeline.projections.counted import counted
from timeline.projections.followups import Assignment, Followup, FollowupBook
from timeline.projections.ledger import LedgerRun, PointsResult, items_before, items_through
from timeline.projections.lifecycle import ACTIVITY, FactsFold, StageResult, lifecycle_as_of, next_stage_change
from timeline.projections.points import POINT_TYPES, PointPlan, PointSources
from timeline.projections.profile import PROFILE_TYPES, Profile, ProfileFold
from timeline.projections.tier import TierResult, TierRun, tier_from_changes, tier_run


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
    profile: Profile
    """The key-person flag, the last visit or greeting, surveys and complaints (projections/profile.py)."""

    versions: PolicyTimeline | None = None
    """The policy versions in force as known at ``known_at`` (None: ``policy`` alone)."""

    @property
    def key_person(self) -> bool:  # 关键人 as of as_of: the last counted update setting it decides
        return self.profile.key_person

    def policy_at(self, moment: dt.datetime) -> str:
        """The id of the version in force at business instant ``moment``."""
        return self.policy if self.versions is None else self.versions.at(moment).id

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
            "key_person": self.key_person,
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
                "see": link(tier.rule),
                "reason": tier.reason,
                "policy": self.policy_at(tier.since),
                "event_ids": [str(e) for e in tier.event_ids],
                "pending": self._change_json(tier.pending) if tier.pending else None,
                "changes": [self._change_json(c) for c in tier.changes],
            },
            "lifecycle_explained": {
                "stage": stage.stage,
                "rule": stage.rule,
                "see": link(stage.rule),
                "reason": stage.reason,
                "policy": self.policy,
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
                        "policy": line.policy or self.policy_at(line.at),
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

    def _change_json(self, change: Any) -> dict[str, Any]:
        return {
            "at": iso(change.at),
            "from": change.from_tier,
            "to": change.to_tier,
            "rule": change.rule,
            "see": link(change.rule),
            "reason": change.reason,
            "policy": change.policy or self.policy_at(change.at),
            "event_ids": [str(e) for e in change.event_ids],
        }


def customer_state(
    history: Sequence[RecordedEvent], policy: Policy | PolicyTimeline, as_of: dt.datetime, known_at: dt.datetime
) -> CustomerState:
    """State at business time ``as_of`` from the events of ``history`` recorded by ``known_at``.

    ``policy``: the versions in force, as known at ``known_at`` (a plain policy: that one for all time).
    """
    events = counted(history, known_at).as_of(as_of)
    if not events or events[0].type != EventType.CUSTOMER_REGISTERED:
        customer = history[0].customer_id if history else "?"
        raise UnknownCustomer(f"customer {customer} is not registered as of {iso(as_of)} as known at {iso(known_at)}")
    return Projection(events, policy).at(as_of, known_at)


class _Folds:
    """The per-concern folds, each taking the counted events of its interest in business order."""

    __slots__ = ("money", "points", "facts", "book", "erased", "profile", "_by_type")

    def __init__(
        self, money: Balances, points: PointSources, facts: FactsFold, book: FollowupBook, erased: bool
    ) -> None:
        self.money, self.points, self.facts, self.book, self.erased = money, points, facts, book, erased
        self.profile = ProfileFold()
        self._by_type: dict[str, tuple[Callable[[RecordedEvent], None], ...]] = {}

    @classmethod
    def new(cls, registration: RecordedEvent, policy: Policy, versions: PolicyTimeline | None = None) -> _Folds:
        return cls(Balances(), PointSources(policy, versions), FactsFold(registration), FollowupBook(), False)

    def copy(self) -> _Folds:
        other = _Folds(self.money.copy(), self.points.copy(), self.facts.copy(), self.book.copy(), self.erased)
        other.profile = self.profile.copy()
        return other

    def feed(self, events: Iterable[RecordedEvent]) -> None:
        by_type = self._by_type
        for event in events:
            handlers = by_type.get(event.type)
            if handlers is None:
                handlers = by_type[event.type] = self._handlers(event.type)
            for handle in handlers:
                handle(event)

    def _handlers(self, kind: str) -> tuple[Callable[[RecordedEvent], None], ...]:
        handlers: list[Callable[[RecordedEvent], None]] = []
        if kind in MONEY_TYPES:
            handlers.append(self.money.add)
        if kind in POINT_TYPES:
            handlers.append(self.points.add)
        if kind in ACTIVITY or kind == EventType.REFERRAL_QUALIFIED:
            handlers.append(self.facts.add)
        if kind in BOOK_TYPES:
            handlers.append(self.book.add)
        if kind in PROFILE_TYPES:
            handlers.append(self.profile.add)
        if kind == EventType.CUSTOMER_ERASED:
            handlers.append(self._erase)
        return tuple(handlers)

    def _erase(self, event: RecordedEvent) -> None:
        self.erased = True


BOOK_TYPES = frozenset(
    {
        EventType.CUSTOMER_REGISTERED,
        EventType.CUSTOMER_PROFILE_UPDATED,
        EventType.FOLLOWUP_SCHEDULED,
        EventType.FOLLOWUP_COMPLETED,
        EventType.CUSTOMER_ERASED,
    }
)


class Projection:
    """What a customer's counted events imply at every instant from the last of them on.

    Built once (balances, the whole tier simulation, every earning and
    redemption), then asked at any business time at or after the last event in
    little more than a binary search: this is what makes asking again cheap.
    :meth:`extended` grows it by later events without folding the earlier
    ones again (:func:`fold` keeps one per stream that way).
    """

    def __init__(self, events: Sequence[RecordedEvent], policy: Policy | PolicyTimeline) -> None:
        versions = PolicyTimeline.of(policy)
        first = versions.first
        if versions.is_single:
            folds = _Folds.new(events[0], first)
            folds.feed(events)
            money = folds.money
            plan = folds.points.plan(money.accounts)
            self._settle(list(events), versions, folds, tier_run(money.aum, first), plan, LedgerRun(first))
            return
        folds = _Folds.new(events[0], first, versions)
        folds.feed(events)
        money = folds.money
        plan = folds.points.plan(money.accounts)
        tiers = tier_run(money.aum, versions)
        self._settle(list(events), versions, folds, tiers, plan, LedgerRun(first, versions))

    def _settle(
        self,
        events: list[RecordedEvent],
        versions: PolicyTimeline,
        folds: _Folds,
        tiers: TierRun,
        plan: PointPlan,
        ledger: LedgerRun,
    ) -> None:
        """Set the projection's parts; ``ledger`` is advanced over the items before the last event."""
        items = plan.items
        ledger.advance(items, items_before(items, events[-1].occurred_at))
        self.events = events
        self.versions = versions
        self.policy = versions.first
        """The policy of every instant when ``versions`` holds one, else the first version."""
        self.registration = events[0]
        self.horizon = events[-1].occurred_at
        self.money = folds.money
        self.tier_changes = tiers.changes
        self.point_items = items
        self.facts = folds.facts.facts()
        self.assignment = folds.book.assignment
        self.profile = folds.profile.profile()
        self.erased = folds.erased
        self._folds = folds
        self._tiers = tiers
        self._ledger = ledger
        self._plan = plan

    def extended(self, later: Sequence[RecordedEvent]) -> Projection:
        """The projection of these events followed by ``later``: counted events in business order, all after
        the last one here.

        What an event changes it changes at its instant and after, so the folds
        go on from where they stood, the tier simulation resumes before the
        last movement, and only the vestings whose 30 days reach the first new
        instant are computed again: the same answers as folding every event.
        """
        if not later:
            return self
        if not self.versions.is_single:  # several versions: folded again (no resume point spans a change)
            return Projection([*self.events, *later], self.versions)
        last, first = self.events[-1], later[0]
        if (first.occurred_at, first.position) <= (last.occurred_at, last.position):
            raise ValueError(f"event {first.event_id} does not come after the last one of the projection")
        folds = self._folds.copy()
        folds.feed(later)
        money, policy = folds.money, self.policy
        extended = Projection.__new__(Projection)
        extended._settle(
            [*self.events, *later],
            self.versions,
            folds,
            tier_run(money.aum, policy, since=self._tiers),
            folds.points.plan_since(self._plan, first.occurred_at, money.accounts, self._lowered(later)),
            self._ledger.copy(),
        )
        return extended

    def _lowered(self, later: Sequence[RecordedEvent]) -> set[str]:
        """Accounts that ``later`` may bring below a balance they had: a withdrawal, a move at their last instant."""
        accounts = self.money.accounts
        lowered = set()
        for event in later:
            if event.type in MONEY_TYPES:
                account = event.record.account_id
                line = accounts.get(account)
                if event.type != EventType.DEPOSIT_MADE or (
                    line is not None and event.occurred_at <= line.instants[-1]
                ):
                    lowered.add(account)
        return lowered

    def at(self, as_of: dt.datetime, known_at: dt.datetime) -> CustomerState:
        if as_of < self.horizon:
            raise ValueError(f"a projection up to {iso(self.horizon)} cannot answer as of {iso(as_of)}")
        versions, money, registration = self.versions, self.money, self.registration
        single = versions.is_single
        policy = self.policy if single else versions.at(as_of)
        tier = tier_from_changes(self.tier_changes, registration.occurred_at, registration.event_id, policy.tier, as_of)
        stage = lifecycle_as_of(self.facts, money.aum, policy.tier.rank(tier.tier), policy, as_of)
        cut = items_through(self.point_items, as_of)
        ledger = self._ledger.copy()
        ledger.advance(self.point_items, cut)
        points = ledger.close(self.point_items, cut, as_of)
        last_activity = self.facts.last_activity
        stage_change = next_stage_change(
            self.facts, money.aum, self.tier_changes, policy, as_of, stage.stage, None if single else versions
        )
        upcoming = [m for m in (tier.next_change_at, points.next_change_at, stage_change) if m]
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
            followups=tuple(self._folds.book.open_at(policy, as_of)),
            last_activity_at=last_activity.occurred_at if last_activity else None,
            qualified_referrals=len(self.facts.qualified),
            erased=self.erased,
            next_change_at=min(upcoming) if upcoming else None,
            profile=self.profile,
            versions=None if single else versions,
        )
