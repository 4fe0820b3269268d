"""Human-readable renderings of states, explanations and follow-up lists (rich)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from timeline.domain.recorded import RecordedEvent, iso
from timeline.domain.rule_docs import link
from timeline.projections.followups import Followup
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


def render_history(customer_id: str, events: Sequence[RecordedEvent]) -> Group:
    """One entry per event, the business instant in the margin: readable at any terminal width."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="cyan")
    grid.add_column()
    for e in events:
        head = Text(e.type, style="bold")
        head.append(f" · position {e.position} · recorded {iso(e.recorded_at)}", style="dim")
        grid.add_row(iso(e.occurred_at), head)
        grid.add_row("", ", ".join(f"{k}={_show(v)}" for k, v in e.data.items()))
    return Group(Text(f"customer {customer_id}: {len(events)} events in business order", style="bold"), grid)


def _show(value: Any) -> str:
    if isinstance(value, dict) and value.get("$erased"):
        return "‹erased›"
    if isinstance(value, dict) and value.get("$encrypted"):
        return "‹encrypted›"
    return str(value)


def render_state(s: CustomerState) -> Table:
    table = Table(title=f"customer {s.customer_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("as of", iso(s.as_of)),
        ("as known at", iso(s.known_at)),
        ("policy", s.policy),
        ("branch / RM", f"{s.assignment.branch_id} / {s.assignment.relationship_manager}"),
        ("tier", f"{s.tier.tier}  ({s.tier.rule}, since {iso(s.tier.since)})"),
        ("lifecycle", f"{s.lifecycle.stage}  ({s.lifecycle.reason})"),
        ("points", str(s.points.available)),
        ("AUM (CNY)", f"{s.aum:,.2f}"),
        ("next change by time alone", iso(s.next_change_at) if s.next_change_at else "none"),
    ]
    if s.erased:
        rows.append(("erased", "yes: personal data is crypto-shredded"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def render_explanation(s: CustomerState) -> Group:
    tier = s.tier
    parts: list = [render_state(s)]
    lines = Text()
    lines.append("Tier ", style="bold")
    lines.append(f"{tier.tier}: {tier.rule} ({link(tier.rule)}) — {tier.reason}\n")
    lines.append(f"  rests on: {', '.join(str(e) for e in tier.event_ids)}\n")
    if tier.pending:
        p = tier.pending
        lines.append(f"  pending: {p.rule} to {p.to_tier} at {iso(p.at)} — {p.reason}\n")
    lines.append("Lifecycle ", style="bold")
    lines.append(f"{s.lifecycle.stage}: {s.lifecycle.rule} ({link(s.lifecycle.rule)}) — {s.lifecycle.reason}\n")
    lines.append(f"  rests on: {', '.join(str(e) for e in s.lifecycle.event_ids)}\n")
    parts.append(lines)
    changes = [
        (iso(c.at), c.from_tier, c.to_tier, c.rule, ", ".join(str(e)[:8] for e in c.event_ids)) for c in tier.changes
    ]
    parts.append(listing("tier changes", ("at", "from", "to", "rule", "events"), changes, whole=("at",)))
    ledger = [
        (
            iso(line.at),
            line.kind,
            f"{line.points:+d}",
            str(line.bucket or ""),
            line.note,
            ", ".join(str(e)[:8] for e in line.event_ids),
        )
        for line in s.points.ledger
    ] + [
        (iso(p.vests_at), "pending", f"+{p.points_if_held}", "", "vests if the balance holds", str(p.event_id)[:8])
        for p in s.points.pending
    ]
    columns = ("at", "kind", "points", "bucket", "note", "event")
    parts.append(listing(f"points ledger: {s.points.available} available", columns, ledger, whole=("at", "event")))
    return Group(*parts)


def render_followups(items: Sequence[Followup]) -> Table:
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
    return listing(f"{len(items)} open follow-ups", columns, rows, whole=("customer", "due"))
