"""Tier under several policy versions (issue 13): each step decided by the version in force at its instant.

The single-version simulation (:mod:`timeline.projections.tier`) stays the
fast path; this one is its plain form over a :class:`PolicyTimeline`, with
the spanning rules of docs/POLICY.md ("Policy versions"):

- an upgrade at instant t is decided by the version in force at t: the lowest
  AUM over [t − its hold, t] (looking back across a change) against its
  thresholds;
- a pending downgrade keeps the grace period in force when it became pending
  (its due instant is fixed then), and is cancelled at any instant at which
  AUM meets the current tier's threshold in force at that instant; at the due
  instant the version then in force says which tier the AUM meets;
- at a version's effective instant, the new thresholds are checked at once: a
  tier whose threshold rose above AUM becomes pending from that instant.

The steps are every movement, every movement plus every hold of a version in
force, every effective instant and every due instant: nothing else changes a
condition, so the simulation is exact between them.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right

from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.types import RuleCode
from timeline.domain.wording import instant, money
from timeline.projections.balances import ZERO, StepLine
from timeline.projections.tier import TierChange, TierRun


def tier_run_versions(aum: StepLine, versions: PolicyTimeline) -> TierRun:
    """Every tier change of ``aum`` under the versions in force at each instant (no resume point)."""
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
        policy, zone, currency = version.policy.tier, version.policy.zone, version.policy.currency
        levels = policy.tiers
        top = len(levels) - 1
        rank = min(rank, top)
        reached = bisect_right(instants, moment)
        current = values[reached - 1] if reached else ZERO
        if due is not None and moment == due:
            assert pending_since is not None
            lower = min(rank, policy.met_by(current))
            if lower != rank:
                changes.append(
                    TierChange(
                        moment,
                        levels[rank].name,
                        levels[lower].name,
                        RuleCode.TIER_DOWNGRADE,
                        f"AUM fell below the {levels[rank].name} threshold at {instant(pending_since, zone)} and "
                        f"stayed below for the {(due - pending_since).days}-day grace period; AUM then was "
                        f"{money(current, currency)} (policy {version.id})",
                        tuple(aum.movers_between(pending_since, moment)),
                        version.id,
                    )
                )
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
                changes.append(
                    TierChange(
                        moment,
                        levels[rank].name,
                        levels[higher].name,
                        RuleCode.TIER_UPGRADE,
                        f"AUM stayed at or above {money(levels[higher].threshold, currency)} for "
                        f"{policy.upgrade_hold_days} days (lowest {money(lowest, currency)}; policy {version.id})",
                        tuple(aum.movers_between(window_start, moment)),
                        version.id,
                    )
                )
                rank = higher
                pending_since = due = None
        if pending_since is None:
            if rank and current < levels[rank].threshold:
                pending_since, due = moment, moment + policy.grace
        elif current >= levels[rank].threshold:
            pending_since = due = None
    return TierRun(tuple(changes), None)
