"""Tier (客户分层), RULES §4: upgrades after a hold, downgrades after a grace period.

The tier is a pure function of the AUM line: it is simulated from the
registration over every instant at which something can happen — a movement
of money, a movement plus the hold (when a raised balance has been held long
enough), and a pending downgrade's due instant. Nothing else can change it,
so the simulation is exact between those instants.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from projections.balances import StepLine
from projections.policy import TierPolicy


@dataclass(frozen=True, slots=True)
class TierChange:
    at: dt.datetime
    from_tier: str
    to_tier: str
    rule: str
    reason: str
    event_ids: tuple[UUID, ...]


@dataclass(frozen=True, slots=True)
class TierResult:
    tier: str
    since: dt.datetime
    rule: str
    reason: str
    event_ids: tuple[UUID, ...]
    changes: tuple[TierChange, ...]
    pending: TierChange | None
    """The change that time alone brings next, if no new event arrives."""

    @property
    def next_change_at(self) -> dt.datetime | None:
        return self.pending.at if self.pending else None


def tier_as_of(
    aum: StepLine, registered_at: dt.datetime, registration_id: UUID, policy: TierPolicy, as_of: dt.datetime
) -> TierResult:
    """The tier at ``as_of`` from the AUM line of the events counted up to then."""
    return tier_from_changes(tier_changes(aum, policy), registered_at, registration_id, policy, as_of)


def tier_changes(aum: StepLine, policy: TierPolicy) -> tuple[TierChange, ...]:
    """Every change the AUM line brings, including those time alone brings after its last movement."""
    return tuple(_simulate(aum, policy))


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
            "registered",
            f"every customer starts at {start} when registered",
            (registration_id,),
            (),
            pending,
        )
    last = changes[-1]
    return TierResult(last.to_tier, last.at, last.rule, last.reason, last.event_ids, changes, pending)


def _at(change: TierChange) -> dt.datetime:
    return change.at


def _simulate(aum: StepLine, policy: TierPolicy) -> Iterator[TierChange]:
    hold, grace, levels = policy.hold, policy.grace, policy.tiers
    candidates = sorted({*aum.instants, *(moment + hold for moment in aum.instants)})
    window = aum.sliding_min()
    rank = 0
    pending_since: dt.datetime | None = None
    index = 0
    while True:
        due = pending_since + grace if pending_since is not None else None
        upcoming = candidates[index] if index < len(candidates) else None
        if upcoming is None and due is None:
            return
        if due is not None and (upcoming is None or due <= upcoming):
            moment = due
            if upcoming == due:
                index += 1
        else:
            assert upcoming is not None
            moment = upcoming
            index += 1
        if due is not None and moment == due:
            assert pending_since is not None
            lower = min(rank, policy.met_by(aum.at(moment)))
            if lower != rank:
                yield TierChange(
                    moment,
                    levels[rank].name,
                    levels[lower].name,
                    "downgrade after grace period",
                    f"AUM fell below {levels[rank].threshold} at {_iso(pending_since)} and stayed below for "
                    f"{policy.downgrade_grace_days} days; AUM then was {aum.at(moment)}",
                    tuple(aum.movers_between(pending_since, moment)),
                )
                rank = lower
            pending_since = None
        lowest = window.over(moment - hold, moment)
        higher = policy.met_by(lowest) if rank + 1 < len(levels) and lowest >= levels[rank + 1].threshold else rank
        if higher > rank:
            yield TierChange(
                moment,
                levels[rank].name,
                levels[higher].name,
                "upgrade after hold",
                f"AUM stayed at or above {levels[higher].threshold} for {policy.upgrade_hold_days} days "
                f"(lowest {lowest})",
                tuple(aum.movers_between(moment - hold, moment)),
            )
            rank = higher
            pending_since = None
        current = aum.at(moment)
        if pending_since is None and current < levels[rank].threshold:
            pending_since = moment
        elif pending_since is not None and current >= levels[rank].threshold:
            pending_since = None


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
