"""Lifecycle stage (客户生命周期), POLICY §4: the first rule that holds decides."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from timeline.domain.policy import Policy, days
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import EventType, RuleCode, Stage
from timeline.domain.wording import instant, money
from timeline.projections.balances import ZERO, StepLine
from timeline.projections.tier import TierChange

ACTIVITY = frozenset(
    {
        EventType.DEPOSIT_MADE,
        EventType.WITHDRAWAL_MADE,
        EventType.VISIT_RECORDED,
        EventType.COMPLAINT_FILED,
        EventType.COMPLAINT_RESOLVED,
        EventType.REFERRAL_MADE,
        EventType.SURVEY_COMPLETED,
        EventType.POINTS_REDEEMED,
        EventType.CUSTOMER_PROFILE_UPDATED,
    }
)
"""Customer activity: greetings, follow-ups, qualifications and corrections are not."""

_DEPOSIT, _FILED, _RESOLVED, _QUALIFIED = (
    EventType.DEPOSIT_MADE,
    EventType.COMPLAINT_FILED,
    EventType.COMPLAINT_RESOLVED,
    EventType.REFERRAL_QUALIFIED,
)
"""Module names for the members :meth:`FactsFold.add` compares with (an enum attribute costs 0.1 µs in 3.11)."""


@dataclass(frozen=True, slots=True)
class StageResult:
    stage: Stage
    code: RuleCode
    """The rule that decided (POLICY §4 numbering)."""
    risks: tuple[RuleCode, ...]
    """For ``at_risk``: the sub-rules that hold (3a, 3b, 3c), in that order; else empty."""
    rule: str
    """The rule as explanations print it, e.g. ``3. at risk (3a, 3c)``."""
    reason: str
    event_ids: tuple[UUID, ...]


@dataclass(frozen=True, slots=True)
class Facts:
    """What the stage rules read from the counted events, gathered once (probing later instants reuses it)."""

    registration: RecordedEvent
    first_deposit: RecordedEvent | None
    unresolved: tuple[RecordedEvent, ...]
    last_activity: RecordedEvent | None
    qualified: tuple[UUID, ...]


class FactsFold:
    """:class:`Facts` gathered one counted event at a time, in business order, from the registration on."""

    __slots__ = ("registration", "first_deposit", "filings", "resolved", "last_activity", "qualified")

    def __init__(self, registration: RecordedEvent) -> None:
        self.registration = registration
        self.first_deposit: RecordedEvent | None = None
        self.filings: list[RecordedEvent] = []
        self.resolved: set[str] = set()
        self.last_activity: RecordedEvent | None = None
        self.qualified: list[UUID] = []

    def copy(self) -> FactsFold:
        other = FactsFold(self.registration)
        other.first_deposit, other.last_activity = self.first_deposit, self.last_activity
        other.filings, other.qualified = self.filings.copy(), self.qualified.copy()
        other.resolved = self.resolved.copy()
        return other

    def add(self, event: RecordedEvent) -> None:
        kind = event.type
        if kind in ACTIVITY:
            self.last_activity = event
            if kind == _DEPOSIT:
                if self.first_deposit is None:
                    self.first_deposit = event
            elif kind == _FILED:
                self.filings.append(event)
            elif kind == _RESOLVED:
                self.resolved.add(event.record.complaint_id)
        elif kind == _QUALIFIED:
            self.qualified.append(event.event_id)

    def facts(self) -> Facts:
        resolved = self.resolved
        return Facts(
            registration=self.registration,
            first_deposit=self.first_deposit,
            unresolved=tuple(e for e in self.filings if e.record.complaint_id not in resolved),
            last_activity=self.last_activity,
            qualified=tuple(self.qualified),
        )


def lifecycle_as_of(facts: Facts, aum: StepLine, tier_rank: int, policy: Policy, as_of: dt.datetime) -> StageResult:
    """The stage at ``as_of`` from the :class:`Facts` of the events counted up to then."""
    rules, zone = policy.lifecycle, policy.zone
    first_deposit = facts.first_deposit
    if first_deposit is None:
        return StageResult(
            Stage.PROSPECT,
            RuleCode.PROSPECT,
            (),
            "1. no deposit yet",
            "no counted deposit",
            (facts.registration.event_id,),
        )
    tenure = as_of - first_deposit.occurred_at

    churn_start = as_of - days(rules.churn_window_days)
    if aum.max_over(churn_start, as_of) == ZERO:
        since = aum.last_change_at_or_before(as_of)
        movers = tuple(aum.movers_between(since, since)) if since else ()
        return StageResult(
            Stage.CHURNED,
            RuleCode.CHURNED,
            (),
            f"2. AUM 0 for {rules.churn_window_days} days",
            f"AUM has been 0 since {_local(since, zone)}",
            movers,
        )

    codes: list[RuleCode] = []
    risks: list[str] = []
    evidence: list[UUID] = []
    stale = as_of - days(rules.stale_complaint_days)
    for event in facts.unresolved:
        if event.occurred_at <= stale:
            risks.append(
                f"3a. complaint {event.record.complaint_id} filed {instant(event.occurred_at, zone)} unresolved "
                f"for {rules.stale_complaint_days}+ days"
            )
            evidence.append(event.event_id)
    if risks:
        codes.append(RuleCode.STALE_COMPLAINT)
    peak, peak_at = aum.argmax_over(as_of - days(rules.drop_window_days), as_of)
    now = aum.at(as_of)
    if _dropped(peak, now, policy):
        codes.append(RuleCode.AUM_DROP)
        risks.append(
            f"3b. AUM {money(now, policy.currency)} is below {rules.drop_ratio:%} of its "
            f"{rules.drop_window_days}-day peak {money(peak, policy.currency)} at {instant(peak_at, zone)}"
        )
        evidence.extend(aum.movers_between(peak_at, as_of))
    last_activity = facts.last_activity
    silence = days(rules.silence_days)
    if tenure >= silence and (last_activity is None or last_activity.occurred_at <= as_of - silence):
        codes.append(RuleCode.SILENCE)
        risks.append(
            f"3c. no customer activity for {rules.silence_days} days"
            + (f" (last {instant(last_activity.occurred_at, zone)})" if last_activity else "")
        )
        if last_activity:
            evidence.append(last_activity.event_id)
    if codes:
        return StageResult(
            Stage.AT_RISK,
            RuleCode.AT_RISK,
            tuple(codes),
            f"3. at risk ({', '.join(codes)})",
            "; ".join(risks),
            tuple(evidence),
        )

    if tenure >= days(rules.loyal_tenure_days):
        qualified = list(facts.qualified)
        if qualified or tier_rank >= policy.tier.rank(rules.loyal_min_tier):
            why = "a qualified referral" if qualified else f"tier at or above {rules.loyal_min_tier}"
            return StageResult(
                Stage.LOYAL,
                RuleCode.LOYAL,
                (),
                "4. loyal",
                f"tenure {tenure.days} days and {why}",
                (first_deposit.event_id, *qualified),
            )
    if tenure >= days(rules.established_tenure_days):
        return StageResult(
            Stage.ESTABLISHED,
            RuleCode.ESTABLISHED,
            (),
            "5. established",
            f"tenure {tenure.days} days since the first deposit",
            (first_deposit.event_id,),
        )
    return StageResult(
        Stage.NEW,
        RuleCode.NEW,
        (),
        "6. new",
        f"tenure {tenure.days} days since the first deposit",
        (first_deposit.event_id,),
    )


def _dropped(peak: Decimal, now: Decimal, policy: Policy) -> bool:
    """Rule 3b: AUM now below the drop ratio of a peak that is high enough to count."""
    rules = policy.lifecycle
    return peak >= rules.drop_min_peak and now < peak * rules.drop_ratio


def next_stage_change(
    facts: Facts,
    aum: StepLine,
    tier_changes: Sequence[TierChange],
    policy: Policy,
    as_of: dt.datetime,
    stage: Stage,
    versions: PolicyTimeline | None = None,
) -> dt.datetime | None:
    """The first instant after ``as_of`` at which time alone (no new event) changes the stage from
    ``stage``, the stage at ``as_of``; None if it never does.

    ``as_of`` is at or after every counted event, so AUM stays at its last value and every condition of
    POLICY §4 flips at most at an instant computed from the facts: a tenure or silence threshold, a
    complaint turning stale, the last positive AUM leaving the churn window, the 90-day peak falling far
    enough to end a drop (the peak only falls, so that happens once), and a tier change of the
    simulation. The stage is constant between those instants, so trying each of them in order is exact.
    Under several ``versions``, the instants of every version in force after ``as_of`` are tried, with
    each version's effective instant, each judged by the version in force then.
    """
    first_deposit = facts.first_deposit
    if first_deposit is None:
        return None
    if versions is None or versions.is_single:
        moments = _moments(facts, aum, policy, as_of)

        def policy_at(moment: dt.datetime) -> Policy:
            return policy

    else:
        moments = set(versions.boundaries())
        for version in versions.spans(as_of, dt.datetime.max.replace(tzinfo=dt.UTC)):
            moments |= _moments(facts, aum, version.policy, as_of)
        policy_at = versions.at
    moments.update(change.at for change in tier_changes[bisect_right(tier_changes, as_of, key=_change_at) :])

    def stage_at(moment: dt.datetime) -> Stage:
        index = bisect_right(tier_changes, moment, key=_change_at)
        here = policy_at(moment)
        rank = here.tier.rank(tier_changes[index - 1].to_tier) if index else 0
        return lifecycle_as_of(facts, aum, rank, here, moment).stage

    return next((m for m in sorted(m for m in moments if m > as_of) if stage_at(m) != stage), None)


def _moments(facts: Facts, aum: StepLine, policy: Policy, as_of: dt.datetime) -> set[dt.datetime]:
    """The instants after the last event at which a condition of ``policy``'s stage rules can flip."""
    rules = policy.lifecycle
    first_deposit = facts.first_deposit
    assert first_deposit is not None
    start = first_deposit.occurred_at
    moments = {start + days(n) for n in (rules.established_tenure_days, rules.loyal_tenure_days, rules.silence_days)}
    if facts.last_activity is not None:
        moments.add(facts.last_activity.occurred_at + days(rules.silence_days))
    moments.update(e.occurred_at + days(rules.stale_complaint_days) for e in facts.unresolved)
    now = aum.values[-1] if aum.values else ZERO
    if now == ZERO:
        moments.update(m for m, peak in _peak_falls(aum, days(rules.churn_window_days), as_of) if peak == ZERO)
    falls = _peak_falls(aum, days(rules.drop_window_days), as_of)
    drop_ends = next((m for m, peak in falls if not _dropped(peak, now, policy)), None)
    if drop_ends is not None:
        moments.add(drop_ends)
    return moments


def _change_at(change: TierChange) -> dt.datetime:
    return change.at


def _peak_falls(aum: StepLine, window: dt.timedelta, after: dt.datetime) -> list[tuple[dt.datetime, Decimal]]:
    """Instants after ``after`` (which is at or after the line's last instant) at which the highest AUM over
    [t − window, t] falls, with the highest value from then on; ascending.

    The value held from ``instants[k-1]`` until ``instants[k]`` stays in the window until
    ``instants[k] + window``; its leaving lowers the highest value, to the highest of the values from
    ``instants[k]`` on, only if it exceeds every one of them.
    """
    instants, values = aum.instants, aum.values
    falls = []
    later = None
    for k in range(len(instants) - 1, -1, -1):
        leaves = instants[k] + window
        if leaves <= after:
            break
        later = values[k] if later is None else max(later, values[k])
        held = values[k - 1] if k else ZERO
        if held > later:
            falls.append((leaves, later))
    falls.reverse()
    return falls


def _local(moment: dt.datetime | None, zone: dt.tzinfo) -> str:
    return instant(moment, zone) if moment else "-"
