"""Human-readable renderings of states, explanations and follow-up lists (rich)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from timeline.cli.output import counted, local, local_as_of
from timeline.domain.recorded import RecordedEvent
from timeline.domain.rule_docs import link
from timeline.projections.counted import CORRECTION
from timeline.projections.followups import Followup
from timeline.projections.points import LedgerLine
from timeline.projections.state import CustomerState


def listing(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], whole: Collection[str] = ()) -> Table:
    """A table whose ``whole`` columns (instants, ids) are never cut or wrapped; other cells wrap or fold."""
    rows = list(rows)
    table = Table(title=title, title_justify="left")
    for index, col in enumerate(columns):
        if col in whole:
            width = max([len(col), *(cell_len(row[index]) for row in rows)])
            table.add_column(col, no_wrap=True, min_width=width)
        else:
            table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def render_history(customer_id: str, events: Sequence[RecordedEvent], zone: ZoneInfo) -> Group:
    """One entry per event, the business instant in the margin: readable at any terminal width.

    Each event shows its id (a correction names the event it voids by it); a voided event says by which.
    """
    voided_by = {e.data["voids_event_id"]: e.event_id for e in events if e.type == CORRECTION}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="cyan")
    grid.add_column()
    for e in events:
        head = Text(e.type, style="bold")
        head.append(f" · position {e.position}", style="dim")
        grid.add_row(local(e.occurred_at, zone), head)
        grid.add_row("", Text(f"id {e.event_id}", style="dim"))
        grid.add_row("", Text(f"recorded {local(e.recorded_at, zone)}", style="dim"))
        if str(e.event_id) in voided_by:
            grid.add_row("", Text(f"voided by {voided_by[str(e.event_id)]}", style="bold red"))
        grid.add_row("", ", ".join(f"{k}={_show(v)}" for k, v in e.data.items()))
    return Group(Text(f"customer {customer_id}: {counted(len(events), 'event')} in business order", style="bold"), grid)


def _show(value: Any) -> str:
    if isinstance(value, dict) and value.get("$erased"):
        return "‹erased›"
    if isinstance(value, dict) and value.get("$encrypted"):
        return "‹encrypted›"
    return str(value)


def render_state(s: CustomerState, zone: ZoneInfo) -> Table:
    """The state's facts, every instant in the policy's time zone."""
    table = Table(title=f"customer {s.customer_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("as of", local_as_of(s.as_of, zone)),
        ("as known at", local(s.known_at, zone)),
        ("policy", s.policy),
        ("branch / RM", f"{s.assignment.branch_id} / {s.assignment.relationship_manager}"),
        ("tier", f"{s.tier.tier}  ({s.tier.rule}, since {local(s.tier.since, zone)})"),
        ("lifecycle", f"{s.lifecycle.stage}  ({s.lifecycle.reason})"),
        ("points", str(s.points.available)),
        ("AUM (CNY)", f"{s.aum:,.2f}"),
        ("next change by time alone", local(s.next_change_at, zone) if s.next_change_at else "none"),
        ("key person", _key_person(s, zone)),
    ]
    if s.erased:
        rows.append(("erased", "yes: personal data is crypto-shredded"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _key_person(s: CustomerState, zone: ZoneInfo) -> str:
    since = s.profile.key_person_since
    return ("yes" if s.key_person else "no") + (f" (since {local(since, zone)})" if since else "")


def render_explanation(s: CustomerState, zone: ZoneInfo) -> Group:
    """The state, the rules behind it, the tier changes and the points ledger (vestings of nothing summed up)."""
    tier = s.tier
    parts: list = [render_state(s, zone)]
    lines = Text()
    lines.append("Tier ", style="bold")
    lines.append(f"{tier.tier}: {tier.rule} ({link(tier.rule)}) — {tier.reason}\n")
    lines.append(f"  rests on: {', '.join(str(e) for e in tier.event_ids)}\n")
    if tier.pending:
        p = tier.pending
        lines.append(f"  pending: {p.rule} to {p.to_tier} at {local(p.at, zone)} — {p.reason}\n")
    lines.append("Lifecycle ", style="bold")
    lines.append(f"{s.lifecycle.stage}: {s.lifecycle.rule} ({link(s.lifecycle.rule)}) — {s.lifecycle.reason}\n")
    lines.append(f"  rests on: {', '.join(str(e) for e in s.lifecycle.event_ids)}\n")
    parts.append(lines)
    changes = [
        (local(c.at, zone), c.from_tier, c.to_tier, c.rule, ", ".join(str(e)[:8] for e in c.event_ids))
        for c in tier.changes
    ]
    parts.append(listing("tier changes", ("at", "from", "to", "rule", "events"), changes, whole=("at",)))
    kept = [line for line in s.points.ledger if not _nothing_vested(line)]
    pending = [p for p in s.points.pending if p.points_if_held]
    nothing = len(s.points.ledger) - len(kept) + len(s.points.pending) - len(pending)
    ledger = [
        (
            local(line.at, zone),
            line.kind,
            f"{line.points:+d}",
            str(line.bucket or ""),
            line.note,
            ", ".join(str(e)[:8] for e in line.event_ids),
        )
        for line in kept
    ] + [
        (
            local(p.vests_at, zone),
            "pending",
            f"+{p.points_if_held}",
            "",
            "vests if the balance holds",
            str(p.event_id)[:8],
        )
        for p in pending
    ]
    columns = ("at", "kind", "points", "bucket", "note", "event")
    table = listing(f"points ledger: {s.points.available} available", columns, ledger, whole=("at", "event"))
    if nothing:
        table.caption = (
            f"left out: {counted(nothing, 'deposit')} vesting no points (not held, or under a unit; see --json)"
        )
        table.caption_justify = "left"
    parts.append(table)
    return Group(*parts)


def _nothing_vested(line: LedgerLine) -> bool:
    return line.kind == "vest" and line.points == 0


def render_followups(items: Sequence[Followup], of_open: int | None = None) -> Table:
    """The follow-ups; ``of_open``: they are the overdue ones of that many open."""
    rows = (
        (
            f.branch_id or "",
            f.relationship_manager or "",
            f.customer_id,
            f.followup_id,
            f.due_date.isoformat(),
            "OVERDUE" if f.overdue else "",
            f.reason,
        )
        for f in items
    )
    columns = ("branch", "RM", "customer", "follow-up", "due", "overdue", "reason")
    if of_open is None:
        title = f"{counted(len(items), 'open follow-up')}"
    else:
        title = f"{len(items)} overdue of {counted(of_open, 'open follow-up')}"
    return listing(title, columns, rows, whole=("customer", "due"))
