"""``timeline demo``: a generated branch, ingested in two rounds and summarised for its branch head."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from timeline.application.batch import Summary
from timeline.application.ingest import Ingestor
from timeline.application.states import StateReader
from timeline.crypto import KekSource
from timeline.domain.errors import TimelineError
from timeline.domain.policy import Policy, TierPolicy
from timeline.engine import NO_KEK, open_engine
from timeline.projections.state import CustomerState
from timeline.projections.tier import TierChange
from timeline.store import open_store
from timeline.synthetic.generate import arrivals, last_full_day
from timeline.synthetic.rounds import Rounds

DEMO_MARK = "demo"
"""The store metadata marking a store the demo made, and so may delete and make again."""
STAGES = ("prospect", "new", "established", "loyal", "at_risk", "churned")
"""The lifecycle stages in funnel order."""
EXAMPLE_CANDIDATES = 200
"""Customers of the second round tried for an example of a changed past (each is one fold)."""


def run_demo(
    customers: int, years: float, seed: int, db: str, err: Console, out: Console, kek: KekSource = NO_KEK
) -> None:
    """Generate a branch, ingest it in two rounds, report on it, and show what the second round changed."""
    if not db.startswith("sqlite:///"):
        raise TimelineError("the demo recreates its database: give a sqlite:/// URL")
    path = db[len("sqlite:///") :]
    remove_demo_store(path)
    last_day = last_full_day(dt.datetime.now(dt.UTC))
    engine = open_engine(db, kek=kek, alongside_other_tables=False)
    engine.store.record_metadata(DEMO_MARK, "created by timeline demo")
    started = time.perf_counter()
    summary = Summary()
    rounds = Rounds(arrivals(customers, years, seed, last_day, engine.policy))
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as progress:
            ingestor = engine.ingestor(batch_size=2000)
            _ingest_round(ingestor, rounds.first(), summary, progress, "round 1: generating and ingesting", None)
            between = _second_after(dt.datetime.now(dt.UTC))
            while dt.datetime.now(dt.UTC) <= between:  # round 2 is stamped after the instant between the rounds
                time.sleep(0.05)
            label = "round 2: late arrivals and corrections"
            _ingest_round(ingestor, rounds.later, summary, progress, label, len(rounds.later))
            reading = progress.add_task("computing every customer's state", total=None)
            reader = StateReader(engine.store, engine.policy)
            now = dt.datetime.now(dt.UTC)

            def advance(position: int, head: int) -> None:
                progress.update(reading, completed=position, total=head)

            states = list(reader.all_states(now, now, progress=advance))
            example = known_then_and_now(reader, rounds, {s.customer_id: s for s in states}, between)
        qualified = sum(1 for o in ingestor.engine_events if o.status == "accepted")
    finally:
        engine.close()
    elapsed = time.perf_counter() - started
    corrections = sum(e["type"] == "correction.recorded" for e in rounds.later)
    err.print(
        f"{summary.accepted:,} events ingested ({summary.rejected} rejected, {qualified} referral qualifications "
        f"written by the engine) into {path} in two rounds, the second {len(rounds.later) - corrections:,} late "
        f"arrivals and {corrections:,} corrections; {len(states):,} customers evaluated in {elapsed:.1f} s",
        highlight=False,
    )
    for table in branch_report(states, now, engine.policy):
        out.print(table)
    for line in _explore(example, rounds, between.astimezone(engine.policy.zone), db) or [
        f"Explore: timeline explain {states[0].customer_id} --db {db}"
    ]:
        out.print(line, highlight=False, soft_wrap=True)


def _explore(
    example: tuple[CustomerState, CustomerState] | None, rounds: Rounds, between: dt.datetime, db: str
) -> list[str]:
    """What round 2 changed of a customer's past, and the command that shows it (nothing without an example)."""
    if example is None:
        return []
    then, known = example
    brought = Counter(
        "correction" if e["type"] == "correction.recorded" else f"late {e['type']}"
        for e in rounds.later
        if e["customer_id"] == known.customer_id
    )
    shown = between.isoformat()
    return [
        f"Known at {shown} → now, {known.customer_id}: {_changes(then, known)} "
        f"(round 2 brought it {', '.join(f'{n} {kind}' for kind, n in sorted(brought.items()))})",
        f"Explore: timeline explain {known.customer_id} --known-at {shown} --db {db}",
    ]


def _ingest_round(
    ingestor: Ingestor,
    events: Iterable[dict[str, Any]],
    summary: Summary,
    progress: Progress,
    label: str,
    total: int | None,
) -> None:
    task = progress.add_task(label, total=total)
    done = 0
    for outcome in ingestor.ingest((None, e) for e in events):
        summary.add(outcome)
        done += 1
        if done % 2000 == 0:
            progress.update(task, completed=done)
    progress.update(task, completed=done, total=done)


def _second_after(moment: dt.datetime) -> dt.datetime:
    """The next whole second: an instant a user can type, after everything stamped so far."""
    return moment.replace(microsecond=0) + dt.timedelta(seconds=1)


def known_then_and_now(
    reader: StateReader, rounds: Rounds, now: dict[str, CustomerState], between: dt.datetime
) -> tuple[CustomerState, CustomerState] | None:
    """A customer whose state as known at ``between`` differs from now, with both states.

    Customers with a correction are tried first (a voided duplicate moves AUM),
    then those with a late birthday greeting or survey (points); a difference in
    AUM, points or tier is preferred to one in the lifecycle stage alone.
    """
    rank: dict[str, int] = {}
    for event in rounds.later:
        kind, customer = event["type"], event["customer_id"]
        earns = kind == "survey.completed" or event["data"].get("occasion") == "birthday"
        order = 0 if kind == "correction.recorded" else 1 if earns else 2
        rank[customer] = min(order, rank.get(customer, order))
    stage_only = None
    for customer in sorted((c for c in rank if c in now), key=lambda c: (rank[c], c))[:EXAMPLE_CANDIDATES]:
        known = now[customer]
        then = reader.state(customer, known.as_of, between)
        if _headline(then) == _headline(known):
            continue
        if (then.aum, then.points.available, then.tier.tier) != (known.aum, known.points.available, known.tier.tier):
            return then, known
        stage_only = stage_only or (then, known)
    return stage_only


def _headline(state: CustomerState) -> dict[str, str]:
    return {
        "AUM": f"{state.aum:,.2f}",
        "points": f"{state.points.available:,}",
        "tier": state.tier.tier,
        "stage": state.lifecycle.stage,
    }


def _changes(then: CustomerState, now: CustomerState) -> str:
    """What differs between two states of a customer, e.g. ``AUM 1,000.00 → 800.00``."""
    before, after = _headline(then), _headline(now)
    return "; ".join(f"{name} {before[name]} → {after[name]}" for name in before if before[name] != after[name])


def remove_demo_store(path: str) -> None:
    """Delete the store at ``path`` if it is a demo store; refuse to replace anything else."""
    if not os.path.exists(path):
        return
    try:
        store = open_store(f"sqlite:///{path}", create=False)
    except TimelineError:
        store = None
    try:
        marked = store is not None and store.metadata(DEMO_MARK) is not None
    finally:
        if store is not None:
            store.close()
    if not marked:
        raise TimelineError(
            f"{path} exists and is not a store made by `timeline demo`: refusing to replace it; give --db a new path"
        )
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def branch_report(states: Sequence[CustomerState], now: dt.datetime, policy: Policy) -> list[Table]:
    """What a branch head reads first; calendar dates are the policy's (the bank's) time zone."""
    return [
        _tier_distribution(states, [t.name for t in policy.tier.tiers]),
        _tier_moves(states, _quarter_start(now, policy.zone), policy),
        _funnel(states),
        _at_risk(states),
        _top_referrers(states),
        _overdue(states),
    ]


def _quarter_start(now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    local = now.astimezone(zone)
    month = 3 * ((local.month - 1) // 3) + 1
    return dt.datetime(local.year, month, 1, tzinfo=local.tzinfo).astimezone(dt.UTC)


def _tier_distribution(states: Sequence[CustomerState], order: list[str]) -> Table:
    counts = Counter(s.tier.tier for s in states)
    aum = Counter()
    for s in states:
        aum[s.tier.tier] += s.aum
    table = Table(title="Tier distribution", title_justify="left")
    for col in ("tier", "customers", "share", "AUM (CNY)"):
        table.add_column(col, justify="right" if col != "tier" else "left")
    total = len(states) or 1
    for name in order:
        table.add_row(name, f"{counts[name]:,}", f"{counts[name] / total:.1%}", f"{aum[name]:,.0f}")
    return table


def _tier_moves(states: Sequence[CustomerState], since: dt.datetime, policy: Policy) -> Table:
    moves = [(c, s) for s in states for c in s.tier.changes if c.at >= since]
    moves.sort(key=lambda m: m[0].at, reverse=True)
    ups = sum(1 for c, _ in moves if c.rule.startswith("upgrade"))
    table = Table(title=f"Tier moves this quarter: {ups} up, {len(moves) - ups} down (latest 10)", title_justify="left")
    for col in ("customer", "when", "move", "why"):
        table.add_column(col)
    for change, s in moves[:10]:
        when = change.at.astimezone(policy.zone).date().isoformat()
        table.add_row(s.customer_id, when, f"{change.from_tier} → {change.to_tier}", _why_moved(change, policy.tier))
    return table


def _why_moved(change: TierChange, tiers: TierPolicy) -> str:
    """The rule in a few words; ``timeline explain`` gives the whole reason and its events."""
    if change.rule.startswith("upgrade"):
        threshold = tiers.tiers[tiers.rank(change.to_tier)].threshold
        return f"≥ {threshold:,.0f} held {tiers.upgrade_hold_days} days"
    threshold = tiers.tiers[tiers.rank(change.from_tier)].threshold
    return f"< {threshold:,.0f} for {tiers.downgrade_grace_days} days"


def _funnel(states: Sequence[CustomerState]) -> Table:
    counts = Counter(s.lifecycle.stage for s in states)
    table = Table(title="Lifecycle funnel", title_justify="left")
    table.add_column("stage")
    table.add_column("customers", justify="right")
    table.add_column("", justify="left")
    top = max(counts.values(), default=1)
    for stage in STAGES:
        table.add_row(stage, f"{counts[stage]:,}", "█" * round(30 * counts[stage] / top))
    return table


def _at_risk(states: Sequence[CustomerState]) -> Table:
    risky = sorted((s for s in states if s.lifecycle.stage == "at_risk"), key=lambda s: s.aum, reverse=True)
    table = Table(title=f"At risk: {len(risky)} customers (top 10 by AUM)", title_justify="left")
    for col in ("customer", "RM", "tier", "AUM (CNY)", "reason"):
        table.add_column(col)
    for s in risky[:10]:
        table.add_row(
            s.customer_id, s.assignment.relationship_manager or "", s.tier.tier, f"{s.aum:,.2f}", s.lifecycle.reason
        )
    return table


def _top_referrers(states: Sequence[CustomerState]) -> Table:
    best = sorted((s for s in states if s.qualified_referrals), key=lambda s: (-s.qualified_referrals, s.customer_id))
    table = Table(title="Top referrers (qualified referrals)", title_justify="left")
    for col in ("customer", "RM", "qualified", "points"):
        table.add_column(col)
    for s in best[:10]:
        table.add_row(
            s.customer_id,
            s.assignment.relationship_manager or "",
            str(s.qualified_referrals),
            f"{s.points.available:,}",
        )
    return table


def _overdue(states: Sequence[CustomerState]) -> Table:
    overdue = [f for s in states for f in s.followups if f.overdue]
    per_rm = Counter((f.branch_id, f.relationship_manager) for f in overdue)
    table = Table(title=f"Overdue follow-ups: {len(overdue)}", title_justify="left")
    for col in ("branch", "RM", "overdue", "oldest due", "customer", "reason"):
        table.add_column(col)
    for (branch, rm), count in sorted(per_rm.items(), key=lambda kv: -kv[1]):
        oldest = min(
            (f for f in overdue if (f.branch_id, f.relationship_manager) == (branch, rm)), key=lambda f: f.due_date
        )
        table.add_row(
            branch or "", rm or "", str(count), oldest.due_date.isoformat(), oldest.customer_id, oldest.reason
        )
    return table
