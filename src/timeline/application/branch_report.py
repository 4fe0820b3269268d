"""What a branch head reads: the tables of ``timeline demo``, ``timeline branch`` and the branch page.

One source for all three, so every figure is the same wherever it is read.
Customers are counted under the branch and relationship manager they have
as of ``as_of`` (as follow-ups are, POLICY §4); windows end at ``as_of``:
the quarter of ``as_of`` in the policy's time zone for tier moves, the 12
calendar months before it, (Q − 12 months, Q], for surveys and complaints.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from statistics import fmean

from timeline.application.report_scope import NamedTables, customers_with
from timeline.application.report_table import (
    ReportTable,
    count,
    heading_instant,
    instant,
    key_person,
    money,
    months_before,
    report_csv,
    share,
    table,
)
from timeline.application.states import StateReader
from timeline.domain.policy import Policy, TierPolicy
from timeline.domain.types import RuleCode, Stage
from timeline.projections.state import CustomerState
from timeline.projections.tier import TierChange

__all__ = ["BranchReport", "ReportTable", "branch_report", "report_csv", "report_of", "quarter_start", "STAGES"]

STAGES = (Stage.PROSPECT, Stage.NEW, Stage.ESTABLISHED, Stage.LOYAL, Stage.AT_RISK, Stage.CHURNED)
"""The lifecycle stages in funnel order."""
FEEDBACK_MONTHS = 12
"""Surveys and complaints are read over the calendar months before ``as_of``."""
SCORES = (1, 2, 3, 4, 5)
"""A survey's score (RULES §1)."""


@dataclass(frozen=True)
class BranchReport(NamedTables):
    branch: str | None
    """None: every branch of the store (what the demo shows)."""
    as_of: dt.datetime
    rm: str | None
    tables: tuple[ReportTable, ...]


def branch_report(
    reader: StateReader,
    policy: Policy,
    branch: str | None,
    as_of: dt.datetime,
    now: dt.datetime,
    rm: str | None = None,
) -> BranchReport:
    """The branch's report as of business time ``as_of``, as known at system time ``now``; one pass over the log."""
    return report_of(reader.all_states(as_of, now), policy, branch, as_of, rm)


def report_of(
    states: Iterable[CustomerState], policy: Policy, branch: str | None, as_of: dt.datetime, rm: str | None = None
) -> BranchReport:
    """:func:`branch_report` from states already computed (all as of ``as_of``)."""
    chosen = customers_with(states, policy, as_of, branch, rm)
    zone = policy.zone
    since = months_before(as_of, FEEDBACK_MONTHS, zone)
    window = f"{heading_instant(since, zone)} to {heading_instant(as_of, zone)}"
    tables = (
        tier_mix(chosen, policy),
        tier_moves(chosen, quarter_start(as_of, policy), policy),
        funnel(chosen),
        at_risk(chosen),
        top_referrers(chosen),
        overdue_followups(chosen),
        surveys_by_rm(chosen, since, as_of, window),
        complaints_by_category(chosen, since, as_of, window),
    )
    return BranchReport(branch, as_of, rm, tables)


def quarter_start(as_of: dt.datetime, policy: Policy) -> dt.datetime:
    """The first instant of the calendar quarter of ``as_of`` in the policy's time zone."""
    local = as_of.astimezone(policy.zone)
    month = 3 * ((local.month - 1) // 3) + 1
    return dt.datetime(local.year, month, 1, tzinfo=policy.zone).astimezone(dt.UTC)


def tier_mix(states: Sequence[CustomerState], policy: Policy) -> ReportTable:
    counts = Counter(s.tier.tier for s in states)
    aum: dict[str, Decimal] = defaultdict(Decimal)
    for s in states:
        aum[s.tier.tier] += s.aum
    rows = [
        (t.name, count(counts[t.name]), share(counts[t.name], len(states)), money(aum[t.name]))
        for t in policy.tier.tiers
    ]
    return table("tier-mix", "Tier distribution", ("tier", "customers", "share", "AUM (CNY)"), rows)


def tier_moves(states: Sequence[CustomerState], since: dt.datetime, policy: Policy) -> ReportTable:
    """Changes from the quarter's first instant up to ``as_of`` (where the states' changes end), latest first."""
    moves = [(c, s) for s in states for c in s.tier.changes if c.at >= since]
    moves.sort(key=lambda m: (m[0].at, m[1].customer_id), reverse=True)
    ups = sum(1 for c, _ in moves if c.rule == RuleCode.TIER_UPGRADE)
    rows = [
        (
            s.customer_id,
            key_person(s.key_person),
            instant(c.at, policy.zone),
            f"{c.from_tier} → {c.to_tier}",
            str(c.rule),
            why_moved(c, policy.tier),
        )
        for c, s in moves
    ]
    title = f"Tier moves this quarter (from {heading_instant(since, policy.zone)}): {ups} up, {len(moves) - ups} down"
    return table("tier-moves", title, ("customer", "key person", "when", "move", "rule", "why"), rows, 0)


def why_moved(change: TierChange, tiers: TierPolicy) -> str:
    """The rule in a few words; ``timeline explain`` gives the whole reason and its events."""
    if change.rule == RuleCode.TIER_UPGRADE:
        threshold = tiers.tiers[tiers.rank(change.to_tier)].threshold
        return f"≥ {threshold:,.0f} held {tiers.upgrade_hold_days} days"
    threshold = tiers.tiers[tiers.rank(change.from_tier)].threshold
    return f"< {threshold:,.0f} for {tiers.downgrade_grace_days} days"


def funnel(states: Sequence[CustomerState]) -> ReportTable:
    counts = Counter(s.lifecycle.stage for s in states)
    rows = [(str(stage), count(counts[stage]), share(counts[stage], len(states))) for stage in STAGES]
    return table("funnel", "Lifecycle funnel", ("stage", "customers", "share"), rows)


def at_risk(states: Sequence[CustomerState]) -> ReportTable:
    """At-risk customers by AUM, largest first, with the reason."""
    risky = sorted((s for s in states if s.lifecycle.stage == Stage.AT_RISK), key=lambda s: (-s.aum, s.customer_id))
    rows = [
        (
            s.customer_id,
            key_person(s.key_person),
            s.assignment.relationship_manager or "",
            s.tier.tier,
            money(s.aum),
            s.lifecycle.reason,
        )
        for s in risky
    ]
    columns = ("customer", "key person", "RM", "tier", "AUM (CNY)", "reason")
    return table("at-risk", f"At risk: {count(len(risky))} customers", columns, rows, 0)


def top_referrers(states: Sequence[CustomerState]) -> ReportTable:
    best = sorted((s for s in states if s.qualified_referrals), key=lambda s: (-s.qualified_referrals, s.customer_id))
    rows = [
        (
            s.customer_id,
            key_person(s.key_person),
            s.assignment.relationship_manager or "",
            count(s.qualified_referrals),
            count(s.points.available),
        )
        for s in best
    ]
    columns = ("customer", "key person", "RM", "qualified", "points")
    return table("top-referrers", "Top referrers (qualified referrals)", columns, rows, 0)


def overdue_followups(states: Sequence[CustomerState]) -> ReportTable:
    """Overdue follow-ups per branch and RM, most first, with the oldest of each."""
    overdue = [(f, s) for s in states for f in s.followups if f.overdue]
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for f, s in overdue:
        groups[(f.branch_id or "", f.relationship_manager or "")].append((f, s))
    rows = []
    for (branch, rm), items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        oldest, s = min(items, key=lambda item: (item[0].due_date, item[0].customer_id))
        rows.append(
            (
                branch,
                rm,
                count(len(items)),
                oldest.due_date.isoformat(),
                s.customer_id,
                key_person(s.key_person),
                oldest.reason,
            )
        )
    columns = ("branch", "RM", "overdue", "oldest due", "customer", "key person", "reason")
    return table("overdue-followups", f"Overdue follow-ups: {count(len(overdue))}", columns, rows, 4)


def surveys_by_rm(states: Sequence[CustomerState], since: dt.datetime, as_of: dt.datetime, window: str) -> ReportTable:
    """Surveys completed in (since, as_of] under each customer's RM as of ``as_of``: count, mean, each score."""
    scores: dict[str, list[int]] = defaultdict(list)
    for s in states:
        for survey in s.profile.surveys:
            if since < survey.at <= as_of:
                scores[s.assignment.relationship_manager or ""].append(survey.score)
    rows = []
    for rm in sorted(scores):
        got = Counter(scores[rm])
        rows.append((rm, count(len(scores[rm])), f"{fmean(scores[rm]):.2f}", *(count(got[n]) for n in SCORES)))
    columns = ("RM", "surveys", "mean score", *(f"score {n}" for n in SCORES))
    return table("surveys-by-rm", f"Survey scores by RM, {window}", columns, rows)


def complaints_by_category(
    states: Sequence[CustomerState], since: dt.datetime, as_of: dt.datetime, window: str
) -> ReportTable:
    """Complaints filed in (since, as_of] by category, and how many of them were resolved (satisfied) by ``as_of``."""
    filed: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    satisfied: Counter[str] = Counter()
    for s in states:
        for c in s.profile.complaints:
            if since < c.filed_at <= as_of:
                filed[c.category] += 1
                if c.resolved_at is not None:
                    resolved[c.category] += 1
                    satisfied[c.category] += bool(c.satisfied)
    rows = [
        (category, count(filed[category]), count(resolved[category]), count(satisfied[category]))
        for category in sorted(filed, key=lambda k: (-filed[k], k))
    ]
    columns = ("category", "filed", "resolved", "resolved satisfied")
    return table("complaints-by-category", f"Complaints by category, filed {window}", columns, rows)
