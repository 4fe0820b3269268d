"""``timeline branch`` and ``timeline worklist``: the branch page's and the worklist's tables, in a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from timeline.application.report_table import ReportTable
from timeline.cli.options import AsOf, Db, Json, KnownAt, PolicyOpt, open_engine, times
from timeline.cli.output import emit, out

Rm = Annotated[str | None, typer.Option("--rm", metavar="RM", help="Only this relationship manager's customers.")]


def branch(
    ctx: typer.Context,
    branch_id: Annotated[str, typer.Argument(metavar="BRANCH", help="The branch, e.g. BR001.")],
    rm: Rm = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """A branch's report: tier mix and moves, funnel, at risk, referrers, overdue follow-ups, surveys, complaints."""
    from timeline.application.branch_report import branch_report
    from timeline.application.states import StateReader

    engine = open_engine(ctx, db, policy=policy, keys=False, create=False)
    try:
        q, k = times(engine.policy.time_zone, as_of, known_at)
        report = branch_report(StateReader(engine.store, engine.policy), engine.policy, branch_id, q, k, rm)
    finally:
        engine.close()
    show(report.tables, json_out)


def worklist(
    ctx: typer.Context,
    rm: Annotated[str, typer.Argument(metavar="RM", help="The relationship manager, e.g. RM001.")],
    as_of: AsOf = None,
    known_at: KnownAt = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """An RM's worklist: at risk, follow-ups, birthdays and tier changes in the next 14 days, quiet key persons."""
    from timeline.application.states import StateReader
    from timeline.application.worklist import worklist as build

    engine = open_engine(ctx, db, policy=policy, keys=True, create=False)  # dates of birth are personal data
    try:
        q, k = times(engine.policy.time_zone, as_of, known_at)
        work = build(StateReader(engine.store, engine.policy), engine.policy, rm, q, k, keys=engine.keyring())
    finally:
        engine.close()
    show(work.tables, json_out)


def show(tables: Sequence[ReportTable], json_out: bool) -> None:
    """``--json``: one object per table (name, title, columns, rows); else one rich table each."""
    if json_out:
        for t in tables:
            emit(t.to_json())
        return
    from timeline.cli.report import listing

    for t in tables:
        out.print(listing(t.title, t.columns, t.rows))


def register(app: typer.Typer, panel: str) -> None:
    """Add these commands to ``app`` under the help panel ``panel``."""
    for command in (branch, worklist):
        app.command(rich_help_panel=panel)(command)
