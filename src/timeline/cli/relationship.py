"""Relationship work: ``state``, ``explain``, ``followups`` and the ``demo`` branch."""

from __future__ import annotations

from typing import Annotated

import typer

from timeline.application.process import collector_paused
from timeline.cli.options import AsOf, Db, Json, KnownAt, PolicyOpt, reading, settings
from timeline.cli.output import emit, err, log_progress, out
from timeline.domain.errors import TimelineError


def state(
    ctx: typer.Context,
    customer_id: Annotated[str | None, typer.Argument(metavar="CUSTOMER_ID", help="The customer (or --all).")] = None,
    all_customers: Annotated[bool, typer.Option("--all", help="Every customer, one JSON line each.")] = False,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Tier, lifecycle stage, points and AUM as of a business time, as known at a system time."""
    from timeline.application.views import state_json

    if all_customers and customer_id is not None:
        raise TimelineError("give a customer id or --all, not both")
    if not all_customers and customer_id is None:
        raise TimelineError("give a customer id or --all")
    if all_customers and not json_out:
        raise TimelineError("state --all writes JSON lines: add --json")
    with reading(ctx, db, policy, as_of, known_at) as r:
        if customer_id is None:
            with log_progress("reading the log") as advance, collector_paused():
                for s in r.reader.all_states(r.as_of, r.known_at, progress=advance):
                    emit(state_json(s))
            return
        result = r.reader.state(customer_id, r.as_of, r.known_at)
    if json_out:
        emit(state_json(result))
        return
    from timeline.cli.report import render_state

    out.print(render_state(result, r.policy.zone))


def explain(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(metavar="CUSTOMER_ID", help="The customer.")],
    as_of: AsOf = None,
    known_at: KnownAt = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Why: the rule behind tier, stage and points, the events it rests on, and the points ledger."""
    from timeline.application.views import explanation_json

    with reading(ctx, db, policy, as_of, known_at) as r:
        result = r.reader.state(customer_id, r.as_of, r.known_at)
    if json_out:
        emit(explanation_json(result))
        return
    from timeline.cli.report import render_explanation

    out.print(render_explanation(result, r.policy.zone))


def followups(
    ctx: typer.Context,
    rm: Annotated[str | None, typer.Option("--rm", metavar="RM", help="Only this relationship manager's.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", metavar="BRANCH", help="Only this branch's.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue ones.")] = False,
    as_of: AsOf = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Open follow-ups per relationship manager and branch; overdue when due before today."""
    from timeline.application.views import followup_json, followup_listing, open_followups

    with reading(ctx, db, policy, as_of, None) as r, log_progress("reading the log") as advance, collector_paused():
        states = list(r.reader.all_states(r.as_of, r.known_at, progress=advance))
    open_items = open_followups(states, rm, branch)
    items = followup_listing(open_items, overdue)
    if json_out:
        for f in items:
            emit(followup_json(f))
        return
    from timeline.cli.report import render_followups

    out.print(render_followups(items, of_open=len(open_items) if overdue else None))


def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(min=10, max=100_000, metavar="N", help="Customers in the branch.")] = 2000,
    years: Annotated[float, typer.Option(min=0.5, max=10, metavar="YEARS", help="Years of history.")] = 3,
    seed: Annotated[int, typer.Option(metavar="N", help="Same seed, same branch.")] = 1,
    db: Annotated[
        str, typer.Option("--db", metavar="URL", help="Where the demo branch is stored (recreated).")
    ] = "sqlite:///timeline-demo.db",
) -> None:
    """Generate a realistic branch, ingest it, and show what a branch head wants to see."""
    from timeline.cli.demo import run_demo

    run_demo(customers, years, seed, db, err, out, kek=settings(ctx).kek_source)


def register(app: typer.Typer, panel: str) -> None:
    """Add these commands to ``app`` under the help panel ``panel``."""
    for command in (state, explain, followups, demo):
        app.command(rich_help_panel=panel)(command)
