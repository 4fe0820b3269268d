"""``timeline demo``: a generated branch, ingested in two rounds and summarised for its branch head."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from timeline.application.batch import Summary
from timeline.application.branch_report import BranchReport, ReportTable, report_of
from timeline.application.ingest import Ingestor
from timeline.application.process import collector_paused
from timeline.application.report_table import KEY_PERSON_MARK
from timeline.application.states import StateReader
from timeline.crypto import KekSource
from timeline.domain.errors import TimelineError
from timeline.engine import NO_KEK, open_engine
from timeline.projections.state import CustomerState
from timeline.store import open_store
from timeline.synthetic.generate import arrivals, last_full_day
from timeline.synthetic.rounds import Rounds

DEMO_MARK = "demo"
"""The store metadata marking a store the demo made, and so may delete and make again."""
SHOWN = 10
"""Rows of a customer list the demo prints (``timeline branch`` prints them all)."""
NUMERIC = frozenset(
    {"customers", "share", "AUM (CNY)", "qualified", "points", "overdue", "surveys", "mean score", "filed", "resolved"}
    | {"resolved satisfied", *(f"score {n}" for n in range(1, 6))}
)
"""Columns right-aligned."""
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

            with collector_paused():
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
    for table in render_report(report_of(states, engine.policy, None, now)):
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


def render_report(report: BranchReport) -> list[Table]:
    """The report's tables, compact enough for a terminal: customer lists cut to their first rows, a key person
    starred beside their id, instants as dates, the rule left to ``why``. ``timeline branch`` prints them whole."""
    return [_render(t) for t in report.tables]


def _render(table: ReportTable) -> Table:
    keep = [i for i, col in enumerate(table.columns) if col not in ("key person", "rule")]
    marked = "key person" in table.columns
    rows = [_compact(table, row, keep) for row in table.rows]
    shown = rows if table.customer_column is None or table.name == "overdue-followups" else rows[:SHOWN]
    columns = [table.columns[i] for i in keep]
    if table.name == "funnel":  # the counts drawn as bars
        top = max((int(r[1].replace(",", "")) for r in rows), default=0) or 1
        columns.append("")
        shown = [(*r, "█" * round(30 * int(r[1].replace(",", "")) / top)) for r in rows]
    out = Table(title=table.title, title_justify="left")
    for index, col in enumerate(columns):
        last = index == len(columns) - 1 and col in ("reason", "why")
        header = col.removeprefix("score ") if col.startswith("score ") else col  # "score 3" → "3": narrower
        out.add_column(header, justify="right" if col in NUMERIC else "left", no_wrap=not last)
    for row in shown:
        out.add_row(*row)
    notes = [f"the first {len(shown)} of {len(rows):,}"] if len(shown) < len(rows) else []
    if marked and any(KEY_PERSON_MARK in row for row in table.rows[: len(shown)]):
        notes.append("* key person")
    if notes:
        out.caption, out.caption_justify = "; ".join(notes), "left"
    return out


def _compact(table: ReportTable, row: tuple[str, ...], keep: list[int]) -> tuple[str, ...]:
    cells = list(row)
    if "key person" in table.columns and table.customer_column is not None:
        flag = cells[table.columns.index("key person")]
        cells[table.customer_column] += " *" if flag else ""
    if "when" in table.columns:
        cells[table.columns.index("when")] = cells[table.columns.index("when")][:10]
    return tuple(cells[i] for i in keep)
