"""Questions the read models answer: ``summary list|moves|at-risk`` and ``alerts``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from timeline.cli.consumer_options import (
    ReadDb,
    StoreDb,
    instant,
    load,
    one_of,
    plural,
    read_db,
)
from timeline.cli.options import Json, PolicyOpt
from timeline.cli.output import emit, out
from timeline.cli.report import listing
from timeline.domain.errors import TimelineError

summary_app = typer.Typer(help="Query the customer_summary read model.", no_args_is_help=True)

COLUMN_GAP = 3
"""Characters between two columns of a borderless table (padding and separator)."""

NUMBERS = ("points", "aum")

Branch = Annotated[str | None, typer.Option("--branch", metavar="BRANCH_ID", help="Only this branch.")]
Rm = Annotated[str | None, typer.Option("--rm", metavar="RM_ID", help="Only this relationship manager's.")]


def _rows_table(title: str, rows: list[dict[str, Any]], columns: dict[str, str], whole: tuple[str, ...]) -> Table:
    """``columns``: field → heading; ``whole``: fields never cut (ids, instants)."""
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    return listing(title, list(columns.values()), cells, whole=tuple(columns[c] for c in whole))


def _day(text: str | None) -> str | None:
    """An instant as its date (the table's job is to scan; ``--json`` has the instant)."""
    return text[:10] if text else None


def _connect(ctx: typer.Context, db: str | None, store: str | None) -> Any:
    from timeline.consumers.readmodels import database

    return database.connect(read_db(ctx, db, store))


def _require_summary(conn: Any) -> None:
    from timeline.consumers.readmodels import database, summary_tables

    if not database.table_exists(conn, summary_tables.SUMMARY_TABLE):
        raise TimelineError(
            "no customer_summary here yet: run `timeline consume summary` or `timeline rebuild summary`"
        )


@summary_app.command("list")
def summary_list(
    ctx: typer.Context,
    tier: Annotated[str | None, typer.Option("--tier", metavar="TIER", help="Only this tier, e.g. affluent.")] = None,
    lifecycle: Annotated[
        str | None, typer.Option("--lifecycle", metavar="STAGE", help="Only this stage, e.g. at_risk.")
    ] = None,
    branch: Branch = None,
    rm: Rm = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, metavar="N", help="At most this many rows.")] = None,
    db: ReadDb = None,
    store: StoreDb = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Customers by tier, lifecycle stage, branch and relationship manager."""
    from timeline.consumers.readmodels import summary_queries

    one_of("--tier", tier, [level.name for level in load(ctx, policy).tier.tiers])
    one_of("--lifecycle", lifecycle, summary_queries.STAGES)
    with _connect(ctx, db, store) as conn:
        _require_summary(conn)
        rows = [r.to_json() for r in summary_queries.list_customers(conn, tier, lifecycle, branch, rm, limit)]
    if json_out:
        for r in rows:
            emit(r)
        return
    for r in rows:
        r["last_activity"], r["next_change"] = _day(r["last_activity_at"]), _day(r["next_change_at"])
    columns = {"customer_id": "customer", "branch_id": "branch", "relationship_manager": "rm", "tier": "tier",
               "lifecycle": "stage", "points": "points", "aum": "aum", "last_activity": "last active",
               "next_change": "next change"}  # fmt: skip
    cells = [["" if r.get(c) is None else str(r[c]) for c in columns] for r in rows]
    table, left_out = _fitting(plural(len(rows), "customer"), list(columns.values()), cells, out.width)
    out.print(table)
    if left_out:
        out.print(f"({', '.join(left_out)}: not shown at this width; --json has every field)")


def _fitting(title: str, headings: list[str], rows: list[list[str]], width: int) -> tuple[Table, list[str]]:
    """The leading columns that fit ``width`` on one line per row, and the headings of those left out."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headings)]
    shown = len(headings)
    while shown > 1 and sum(widths[:shown]) + COLUMN_GAP * (shown - 1) > width:
        shown -= 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for heading in headings[:shown]:
        table.add_column(heading, no_wrap=True, justify="right" if heading in NUMBERS else "left")
    for row in rows:
        table.add_row(*row[:shown])
    return table, headings[shown:]


@summary_app.command("moves")
def summary_moves(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", metavar="WHEN", help="From this date (its start) or instant.")],
    end: Annotated[str, typer.Option("--to", metavar="WHEN", help="To this date (its end) or instant.")],
    direction: Annotated[str | None, typer.Option("--direction", metavar="up|down", help="up or down.")] = None,
    branch: Branch = None,
    db: ReadDb = None,
    store: StoreDb = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Who moved tier between two dates, with the rule and reason of each move."""
    from timeline.consumers.readmodels import summary_queries

    one_of("--direction", direction, ("up", "down"))
    pol = load(ctx, policy)
    lo, hi = instant(start, pol.time_zone, start_of_day=True), instant(end, pol.time_zone)
    assert lo is not None and hi is not None
    if hi < lo:
        raise TimelineError("--to is before --from")
    with _connect(ctx, db, store) as conn:
        _require_summary(conn)
        moves = [m.to_json() for m in summary_queries.tier_moves(conn, lo, hi, direction, branch)]
    if json_out:
        for m in moves:
            emit(m)
        return
    columns = {"at": "at", "customer_id": "customer", "branch_id": "branch", "from": "from", "to": "to", "rule": "rule"}
    out.print(_rows_table(plural(len(moves), "tier move"), moves, columns, ("at", "customer_id")))


@summary_app.command("at-risk")
def summary_at_risk(
    ctx: typer.Context,
    branch: Branch = None,
    rm: Rm = None,
    db: ReadDb = None,
    store: StoreDb = None,
    json_out: Json = False,
) -> None:
    """Customers at risk of churning, with the rule that holds and why."""
    from timeline.consumers.readmodels import summary_queries

    with _connect(ctx, db, store) as conn:
        _require_summary(conn)
        rows = [r.at_risk_json() for r in summary_queries.at_risk(conn, branch, rm)]
    if json_out:
        for r in rows:
            emit(r)
        return
    columns = {"customer_id": "customer", "branch_id": "branch", "relationship_manager": "rm", "aum": "aum",
               "reason": "reason"}  # fmt: skip
    out.print(_rows_table(f"{plural(len(rows), 'customer')} at risk", rows, columns, ("customer_id", "aum")))


def alerts_command(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", metavar="WHEN", help="Only alerts at or after this date or instant.")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", metavar="KIND", help="at_risk or tier_drop.")] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", metavar="CUSTOMER_ID", help="Only this customer's.")
    ] = None,
    db: ReadDb = None,
    store: StoreDb = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """The alerts `consume alerts` has raised, with their explanations."""
    from timeline.consumers.readmodels import database
    from timeline.consumers.readmodels.alerts import KINDS, list_alerts

    one_of("--kind", kind, KINDS)
    pol = load(ctx, policy)
    with _connect(ctx, db, store) as conn:
        if not database.table_exists(conn, "alerts"):
            raise TimelineError("no alerts table here yet: run `timeline consume alerts`")
        rows = list_alerts(conn, instant(since, pol.time_zone, start_of_day=True), kind, customer)
    if json_out:
        for r in rows:
            emit(r)
        return
    for r in rows:
        r["why"] = r["explanation"].get("reason")
    columns = {"at": "at", "alert": "alert", "customer_id": "customer", "from": "from", "to": "to", "why": "why"}
    out.print(_rows_table(plural(len(rows), "alert"), rows, columns, ("at", "customer_id")))
