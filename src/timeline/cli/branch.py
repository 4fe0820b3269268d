"""``timeline branch`` and ``timeline worklist``: the branch page's and the worklist's tables, in a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from timeline.application.report_table import ReportTable
from timeline.cli.options import AsOf, Db, Json, KnownAt, PolicyOpt, reading
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

    with reading(ctx, db, policy, as_of, known_at) as r:
        report = branch_report(r.reader, r.policy, branch_id, r.as_of, r.known_at, rm)
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
    from timeline.application.worklist import worklist as build

    with reading(ctx, db, policy, as_of, known_at, keys=True) as r:  # dates of birth are personal data
        work = build(r.reader, r.policy, rm, r.as_of, r.known_at, keys=r.engine.keyring())
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
