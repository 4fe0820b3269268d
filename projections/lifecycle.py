"""Lifecycle stage (客户生命周期), RULES §4: the first rule that holds decides."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from timeline.projections.balances import ZERO, StepLine

from timeline.domain.policy import Policy, days
from timeline.domain.recorded import RecordedEvent

ACTIVITY = frozenset(
    {
        "deposit.made",
        "withdrawal.made",
        "visit.recorded",
        "complaint.filed",
        "complaint.resolved",
        "referral.made",
        "survey.completed",
        "points.redeemed",
        "customer.profile_updated",
    }
)
"""Customer activity: greetings, follow-ups, qualifications and corrections are not."""


@dataclass(frozen=True, slots=True)
class StageResult:
    stage: str
    rule: str
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
    filings: tuple[RecordedEvent, ...]
    """Every complaint filed, resolved or not (each turns 30 days old at its own instant)."""


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
            if kind == "deposit.made":
                if self.first_deposit is None:
                    self.first_deposit = event
            elif kind == "complaint.filed":
                self.filings.append(event)
            elif kind == "complaint.resolved":
                self.resolved.add(event.data["complaint_id"])
        elif kind == "referral.qualified":
            self.qualified.append(event.event_id)

    def facts(self) -> Facts:
        resolved = self.resolved
        return Facts(
            registration=self.registration,
            first_deposit=self.first_deposit,
            unresolved=tuple(e for e in self.filings if e.data["complaint_id"] not in resolved),
            last_activity=self.last_activity,
            qualified=tuple(self.qualified),
            filings=tuple(self.filings),
        )


def lifecycle_as_of(facts: Facts, aum: StepLine, tier_rank: int, policy: Policy, as_of: dt.datetime) -> StageResult:
    """The stage at ``as_of`` from the :class:`Facts` of the events counted up to then."""
    rules = policy.lifecycle
    first_deposit = facts.first_deposit
    if first_deposit is None:
        return StageResult("prospect", "1. no deposit yet", "no counted deposit", (facts.registration.event_id,))
    tenure = as_of - first_deposit.occurred_at

    churn_start = as_of - days(rules.churn_window_days)
    if aum.max_over(churn_start, as_of) == ZERO:
        since = aum.last_change_at_or_before(as_of)
        movers = tuple(aum.movers_between(since, since)) if since else ()
        return StageResult(
            "churned", f"2. AUM 0 for {rules.churn_window_days} days", f"AUM has been 0 since {_iso(since)}", movers
        )

    risks: list[str] = []
    evidence: list[UUID] = []
    stale = as_of - days(rules.stale_complaint_days)
    for event in facts.unresolved:
        if event.occurred_at <= stale:
            risks.append(
                f"3a. complaint {event.data['complaint_id']} filed {_iso(event.occurred_at)} unresolved "
                f"for {rules.stale_complaint_days}+ days"
            )
            evidence.append(event.event_id)
    peak, peak_at = aum.argmax_over(as_of - days(rules.drop_window_days), as_of)
    now = aum.at(as_of)
    if peak >= rules.drop_min_peak and now < peak * rules.drop_ratio:
        risks.append(
            f"3b. AUM {now} is below {rules.drop_ratio:%} of its {rules.drop_window_days}-day peak "
            f"{peak} at {_iso(peak_at)}"
        )
        evidence.extend(aum.movers_between(peak_at, as_of))
    last_activity = facts.last_activity
    silence = days(rules.silence_days)
    if tenure >= silence and (last_activity is None or last_activity.occurred_at <= as_of - silence):
        risks.append(
            f"3c. no customer activity for {rules.silence_days} days"
            + (f" (last {_iso(last_activity.occurred_at)})" if last_activity else "")
        )
        if last_activity:
            evidence.append(last_activity.event_id)
    if risks:
        codes = ", ".join(dict.fromkeys(r.split(".", 1)[0] for r in risks))
        return StageResult("at_risk", f"3. at risk ({codes})", "; ".join(risks), tuple(evidence))

    if tenure >= days(rules.loyal_tenure_days):
        qualified = list(facts.qualified)
        if qualified or tier_rank >= policy.tier.rank(rules.loyal_min_tier):
            why = "a qualified referral" if qualified else f"tier at or above {rules.loyal_min_tier}"
            return StageResult(
                "loyal", "4. loyal", f"tenure {tenure.days} days and {why}", (first_deposit.event_id, *qualified)
            )
    if tenure >= days(rules.established_tenure_days):
        return StageResult(
            "established",
            "5. established",
            f"tenure {tenure.days} days since the first deposit",
            (first_deposit.event_id,),
        )
    return StageResult("new", "6. new", f"tenure {tenure.days} days since the first deposit", (first_deposit.event_id,))


def lifecycle_candidates(facts: Facts, aum: StepLine, policy: Policy, after: dt.datetime) -> list[dt.datetime]:
    """Instants after ``after`` at which time alone may change the stage (no new events)."""
    rules = policy.lifecycle
    moments: set[dt.datetime] = set()
    first_deposit = facts.first_deposit
    if first_deposit is None:
        return []
    for tenure in (rules.established_tenure_days, rules.loyal_tenure_days, rules.silence_days):
        moments.add(first_deposit.occurred_at + days(tenure))
    last_activity = facts.last_activity
    if last_activity:
        moments.add(last_activity.occurred_at + days(rules.silence_days))
    for event in facts.filings:
        moments.add(event.occurred_at + days(rules.stale_complaint_days))
    for window in {rules.churn_window_days, rules.drop_window_days}:
        moments.update(_window_max_drops(aum, days(window), after))
    return sorted(m for m in moments if m > after)


def _window_max_drops(aum: StepLine, window: dt.timedelta, after: dt.datetime) -> list[dt.datetime]:
    """Instants after ``after`` at which the highest AUM over [t − window, t] falls, with no new event.

    The value held from ``instants[k-1]`` until ``instants[k]`` stays in the window until
    ``instants[k] + window``; its leaving lowers the highest value only if it exceeds every later value.
    (Churn and the drop from the peak change with time alone only there.)
    """
    drops = []
    later = None
    for k in range(len(aum.instants) - 1, -1, -1):
        leaves = aum.instants[k] + window
        if leaves <= after:
            break
        later = aum.values[k] if later is None else max(later, aum.values[k])
        held = aum.values[k - 1] if k else ZERO
        if held > later:
            drops.append(leaves)
    return drops


def _iso(moment: dt.datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else "-"
