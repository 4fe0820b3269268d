"""Human-readable renderings of states, explanations and follow-up lists (rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from projections.followups import Followup
from projections.state import CustomerState
from timeline.recorded import iso


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
    lines.append(f"{tier.tier}: {tier.rule} — {tier.reason}\n")
    lines.append(f"  rests on: {', '.join(str(e) for e in tier.event_ids)}\n")
    if tier.pending:
        p = tier.pending
        lines.append(f"  pending: {p.rule} to {p.to_tier} at {iso(p.at)} — {p.reason}\n")
    lines.append("Lifecycle ", style="bold")
    lines.append(f"{s.lifecycle.stage}: {s.lifecycle.rule} — {s.lifecycle.reason}\n")
    lines.append(f"  rests on: {', '.join(str(e) for e in s.lifecycle.event_ids)}\n")
    parts.append(lines)
    history = Table(title="tier changes", title_justify="left")
    for col in ("at", "from", "to", "rule", "events"):
        history.add_column(col)
    for c in tier.changes:
        history.add_row(iso(c.at), c.from_tier, c.to_tier, c.rule, ", ".join(str(e)[:8] for e in c.event_ids))
    parts.append(history)
    ledger = Table(title=f"points ledger: {s.points.available} available", title_justify="left")
    for col in ("at", "kind", "points", "bucket", "note", "event"):
        ledger.add_column(col)
    for line in s.points.ledger:
        ledger.add_row(
            iso(line.at),
            line.kind,
            f"{line.points:+d}",
            str(line.bucket or ""),
            line.note,
            ", ".join(str(e)[:8] for e in line.event_ids),
        )
    for p in s.points.pending:
        ledger.add_row(
            iso(p.vests_at), "pending", f"+{p.points_if_held}", "", "vests if the balance holds", str(p.event_id)[:8]
        )
    parts.append(ledger)
    return Group(*parts)


def render_followups(items: Sequence[Followup]) -> Table:
    table = Table(title=f"{len(items)} open follow-ups", title_justify="left")
    for col in ("branch", "RM", "customer", "follow-up", "due", "overdue", "reason"):
        table.add_column(col)
    for f in items:
        table.add_row(
            f.branch_id or "",
            f.relationship_manager or "",
            f.customer_id,
            f.followup_id,
            f.due_date.isoformat(),
            "OVERDUE" if f.overdue else "",
            f.reason,
        )
    return table
