"""Tier (客户分层), POLICY §4: upgrades after a hold, downgrades after a grace period.

The tier is a pure function of the AUM line: it is simulated from the
registration over every instant at which something can happen — a movement
of money, a movement plus the hold (when a raised balance has been held long
enough), and a pending downgrade's due instant. Nothing else can change it,
so the simulation is exact between those instants.

A step of the simulation reads the line only up to its own instant, so the
steps before the line's last instant do not change when the line grows
after it: a :class:`TierRun` keeps where the simulation stood just before
that instant, and the run of a longer line resumes from there.

Under several policy versions (issue 13) each step is decided by the version
in force at its instant (docs/POLICY.md, "Policy versions"): an upgrade at t
by that version's hold and thresholds, looking back across a change; a
pending downgrade keeps the grace period in force when it became pending and
is cancelled at any instant AUM meets the tier's threshold then in force; at
a version's effective instant the new thresholds are checked at once.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from timeline.domain.policy import Policy, TierPolicy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.types import RuleCode
from timeline.domain.wording import instant, money
from timeline.projections.balances import ZERO, StepLine


@dataclass(frozen=True, slots=True)
class TierChange:
    at: dt.datetime
    from_tier: str
    to_tier: str
    rule: RuleCode
    """:attr:`RuleCode.TIER_UPGRADE` or :attr:`RuleCode.TIER_DOWNGRADE` (its text is what explanations print)."""
    reason: str
    event_ids: tuple[UUID, ...]
    policy: str | None = None
    """The policy version that decided it, where several are in force (None: the one policy)."""


@dataclass(frozen=True, slots=True)
class TierResult:
    tier: str
    """A tier id of the policy (tiers are policy data, not a closed vocabulary)."""
    since: dt.datetime
    rule: RuleCode
    reason: str
    event_ids: tuple[UUID, ...]
    changes: tuple[TierChange, ...]
    pending: TierChange | None
    """The change that time alone brings next, if no new event arrives."""

    @property
    def next_change_at(self) -> dt.datetime | None:
        return self.pending.at if self.pending else None


@dataclass(frozen=True, slots=True)
class _Resume:
    """The simulation just before the step at ``moment``: the tier rank, a pending downgrade, changes so far."""

    moment: dt.datetime
    rank: int
    pending_since: dt.datetime | None
    changes: int


@dataclass(frozen=True, slots=True)
class TierRun:
    """Every change an AUM line brings (including those time alone brings after it), and where to resume."""

    changes: tuple[TierChange, ...]
    resume: _Resume | None
    """Just before the line's last instant; None for a line without movements."""


def tier_run(aum: StepLine, policy: Policy | PolicyTimeline, since: TierRun | None = None) -> TierRun:
    """Simulate the tier over ``aum`` under a policy, or under the versions in force at each instant.

    ``since``: the run of a line that ``aum`` extends (the same instants and
    values before its last instant, later instants added); the simulation
    resumes where that one stood before its last instant. A single version is
    the plain case, simulated in one pass with a sliding-window minimum;
    several are simulated step by step (no resume point).
    """
    versions = PolicyTimeline.of(policy)
    if not versions.is_single:
        return _run_versions(aum, versions)
    policy = versions.first
    if since is None or since.resume is None:
        changes: list[TierChange] = []
        resume = _simulate(aum, policy, changes, None, 0, None)
    else:
        start = since.resume
        changes = list(since.changes[: start.changes])
        resume = _simulate(aum, policy, changes, start.moment, start.rank, start.pending_since)
    return TierRun(tuple(changes), resume)


def tier_from_changes(
    all_changes: tuple[TierChange, ...],
    registered_at: dt.datetime,
    registration_id: UUID,
    policy: TierPolicy,
    as_of: dt.datetime,
) -> TierResult:
    """The tier at ``as_of`` given every change of a line; the first later change is pending."""
    cut = bisect_right(all_changes, as_of, key=_at)
    changes = all_changes[:cut]
    pending = all_changes[cut] if cut < len(all_changes) else None
    if not changes:
        start = policy.tiers[0].name
        return TierResult(
            start,
            registered_at,
            RuleCode.TIER_START,
            f"every customer starts at {start} when registered",
            (registration_id,),
            (),
            pending,
        )
    last = changes[-1]
    return TierResult(last.to_tier, last.at, last.rule, last.reason, last.event_ids, changes, pending)


def _at(change: TierChange) -> dt.datetime:
    return change.at


def _simulate(
    aum: StepLine,
    whole: Policy,
    changes: list[TierChange],
    start: dt.datetime | None,
    rank: int,
    pending_since: dt.datetime | None,
) -> _Resume | None:
    """Run the steps at ``start`` and after (all of them if None) from that state; append the changes.

    The steps are the union of every instant and every instant + hold, in
    order, with a pending downgrade's due instant merged in. At one step: a
    due downgrade first, then an upgrade, then the pending check. The lowest
    AUM over the hold window comes from a monotonic deque of change indices:
    the windows only slide forward, so each minimum costs O(1) amortised.
    """
    policy = whole.tier
    hold, grace, levels = policy.hold, policy.grace, policy.tiers
    thresholds = [level.threshold for level in levels]
    top = len(levels) - 1
    instants, values = aum.instants, aum.values
    count = len(instants)
    if not count:
        return None
    mark = instants[-1]
    resume: _Resume | None = None
    moved = held = entered = 0
    if start is not None:
        moved = bisect_left(instants, start)
        held = bisect_left(instants, start - hold)
        entered = bisect_right(instants, start - hold)
    # moved, held: the next instant, and the next instant + hold, that are not yet a step;
    # reached: instants at or before the step (AUM there is values[reached - 1]);
    # entered: instants at or before the window's start (the value held there has index entered - 1);
    # queue: indices of the window's candidate minima from max(entered - 1, 0) on, values ascending.
    reached = moved
    queue: deque[int] = deque()
    added = max(0, entered - 1) - 1
    while True:
        upcoming: dt.datetime | None
        if moved < count:
            upcoming = instants[moved]
            if held < count:
                later = instants[held] + hold
                if later < upcoming:
                    upcoming = later
        elif held < count:
            upcoming = instants[held] + hold
        else:
            upcoming = None
        due = pending_since + grace if pending_since is not None else None
        if upcoming is None and due is None:
            return resume
        if due is not None and (upcoming is None or due <= upcoming):
            moment = due
        else:
            assert upcoming is not None
            moment = upcoming
        if moment == upcoming:
            if moved < count and instants[moved] == moment:
                moved += 1
            if held < count and instants[held] + hold == moment:
                held += 1
        if resume is None and moment >= mark:
            resume = _Resume(moment, rank, pending_since, len(changes))
        while reached < count and instants[reached] <= moment:
            reached += 1
        current = values[reached - 1] if reached else ZERO
        if due is not None and moment == due:
            assert pending_since is not None
            lower = min(rank, policy.met_by(current))
            if lower != rank:
                changes.append(_downgrade(whole, aum, rank, lower, pending_since, moment, current, None))
                rank = lower
            pending_since = None
        if rank < top:
            window_start = moment - hold
            while added + 1 < reached:
                added += 1
                value = values[added]
                while queue and values[queue[-1]] >= value:
                    queue.pop()
                queue.append(added)
            while entered < count and instants[entered] <= window_start:
                entered += 1
            while queue and queue[0] < entered - 1:
                queue.popleft()
            lowest = values[queue[0]] if queue else ZERO
            if not entered and ZERO < lowest:
                lowest = ZERO
            if lowest >= thresholds[rank + 1]:
                higher = policy.met_by(lowest)
                changes.append(_upgrade(whole, aum, rank, higher, window_start, moment, lowest, None))
                rank = higher
                pending_since = None
        if pending_since is None:
            if rank and current < thresholds[rank]:  # the lowest tier has nothing to fall to
                pending_since = moment
        elif current >= thresholds[rank]:
            pending_since = None


def _run_versions(aum: StepLine, versions: PolicyTimeline) -> TierRun:
    """Every tier change of ``aum`` under the versions in force at each instant: the steps are every
    movement, every movement plus every hold of a version in force, every effective instant and every
    due instant (nothing else changes a condition, so the run is exact between them)."""
    instants, values = aum.instants, aum.values
    if not instants:
        return TierRun((), None)
    forced = versions.in_force()
    holds = {v.policy.tier.hold for v in forced}
    first = instants[0]
    steps = sorted(
        {*instants, *(i + h for i in instants for h in holds), *(b for b in versions.boundaries() if b > first)}
    )
    changes: list[TierChange] = []
    rank = 0
    pending_since: dt.datetime | None = None
    due: dt.datetime | None = None
    index = 0
    while index < len(steps) or due is not None:
        if due is not None and (index >= len(steps) or due <= steps[index]):
            moment = due
            if index < len(steps) and steps[index] == due:
                index += 1
        else:
            moment = steps[index]
            index += 1
        version = versions.version_at(moment)
        policy = version.policy.tier
        levels = policy.tiers
        top = len(levels) - 1
        rank = min(rank, top)
        reached = bisect_right(instants, moment)
        current = values[reached - 1] if reached else ZERO
        if due is not None and moment == due:
            assert pending_since is not None
            lower = min(rank, policy.met_by(current))
            if lower != rank:
                changes.append(_downgrade(version.policy, aum, rank, lower, pending_since, moment, current, version.id))
                rank = lower
            pending_since = due = None
        if rank < top:
            window_start = moment - policy.hold
            held = bisect_right(instants, window_start) - 1
            lowest = min(values[max(held, 0) : reached]) if reached else ZERO
            if held < 0 and ZERO < lowest:
                lowest = ZERO
            if lowest >= levels[rank + 1].threshold:
                higher = policy.met_by(lowest)
                changes.append(_upgrade(version.policy, aum, rank, higher, window_start, moment, lowest, version.id))
                rank = higher
                pending_since = due = None
        if pending_since is None:
            if rank and current < levels[rank].threshold:
                pending_since, due = moment, moment + policy.grace
        elif current >= levels[rank].threshold:
            pending_since = due = None
    return TierRun(tuple(changes), None)


def _downgrade(
    policy: Policy,
    aum: StepLine,
    rank: int,
    lower: int,
    pending_since: dt.datetime,
    moment: dt.datetime,
    current: Decimal,
    version: str | None,
) -> TierChange:
    """The change a due downgrade makes; ``version``: the policy version in force, where several are."""
    levels, currency = policy.tier.tiers, policy.currency
    return TierChange(
        moment,
        levels[rank].name,
        levels[lower].name,
        RuleCode.TIER_DOWNGRADE,
        f"AUM fell below the {levels[rank].name} threshold ({money(levels[rank].threshold, currency)}) at "
        f"{instant(pending_since, policy.zone)} and stayed below for {(moment - pending_since).days} days; "
        f"AUM then was {money(current, currency)}" + (f" (policy {version})" if version else ""),
        tuple(aum.movers_between(pending_since, moment)),
        version,
    )


def _upgrade(
    policy: Policy,
    aum: StepLine,
    rank: int,
    higher: int,
    window_start: dt.datetime,
    moment: dt.datetime,
    lowest: Decimal,
    version: str | None,
) -> TierChange:
    """The change an upgrade after the hold makes; ``version`` as for :func:`_downgrade`."""
    levels, currency = policy.tier.tiers, policy.currency
    return TierChange(
        moment,
        levels[rank].name,
        levels[higher].name,
        RuleCode.TIER_UPGRADE,
        f"AUM stayed at or above {money(levels[higher].threshold, currency)} for {policy.tier.upgrade_hold_days} "
        f"days (lowest {money(lowest, currency)}" + (f"; policy {version})" if version else ")"),
        tuple(aum.movers_between(window_start, moment)),
        version,
    )
