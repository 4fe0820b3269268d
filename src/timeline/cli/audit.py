"""Ingest and audit: ``init``, ``ingest``, ``history``, ``verify``, ``generate``, ``schemas export``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from timeline.application.batch import Summary
from timeline.application.jsonl import check_utf8, read_lines
from timeline.cli.options import Db, Json, open_engine, settings
from timeline.cli.output import counted, emit, err, input_progress, out, printable
from timeline.cli.plain_help import PlainGroup
from timeline.domain.errors import TimelineError

schemas_app = typer.Typer(cls=PlainGroup, help="JSON Schemas of the events and of the policy.", no_args_is_help=True)


def ingest(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="JSON Lines file, or - for standard input.")],
    db: Db = None,
    atomic: Annotated[bool, typer.Option("--atomic", help="Store all events of the input or none.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, metavar="N", help="Events per transaction.")] = 2000,
) -> None:
    """Ingest events; rejects go to stderr as JSON lines, then a summary line."""
    if path != "-":
        if not Path(path).is_file():
            raise TimelineError(f"no such file: {path}")
        check_utf8(path)
    engine = open_engine(ctx, db, alongside_other_tables=False)
    summary = Summary()
    try:
        with input_progress(path) as lines:
            for outcome in engine.ingestor(batch_size=batch_size).ingest(read_lines(lines), atomic=atomic):
                summary.add(outcome)
                if outcome.status == "rejected":
                    sys.stderr.write(printable(json.dumps(outcome.to_json(), ensure_ascii=False)) + "\n")
    finally:
        engine.close()
    sys.stderr.write(json.dumps({"summary": summary.to_json()}) + "\n")
    if summary.rejected:
        raise typer.Exit(1)


def history(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(metavar="CUSTOMER_ID", help="The customer.")],
    db: Db = None,
    json_out: Json = False,
) -> None:
    """A customer's events in business order: id, recorded_at, position, PII as stored, what voided what."""
    from timeline.application.keyring import load_history
    from timeline.application.views import business_order, history_json

    engine = open_engine(ctx, db, keys=False, create=False)
    try:
        stored = load_history(engine.store, engine.keyring(), customer_id)
        events = business_order(stored)
    finally:
        engine.close()
    if not events:
        raise TimelineError(f"unknown customer {customer_id}: no events stored")
    if json_out:
        for e in events:
            emit(history_json(e))
        return
    from timeline.cli.report import render_history

    out.print(render_history(customer_id, events, engine.policy.zone))


def verify(
    ctx: typer.Context,
    db: Db = None,
    customer: Annotated[
        str | None, typer.Option("--customer", metavar="CUSTOMER_ID", help="Verify one customer only.")
    ] = None,
    json_out: Json = False,
) -> None:
    """Recompute every hash chain and check every key; name the first altered, inserted or missing event."""
    from timeline.application.verify import verify as run_verify
    from timeline.application.views import verify_json
    from timeline.engine import verify_wrapper
    from timeline.store.access_sql import access_store

    engine = open_engine(ctx, db, keys=False, create=False)
    try:
        wrapper = verify_wrapper(engine.store, settings(ctx).kek_source)
        report = run_verify(engine.store, customer, wrapper, access=access_store(engine.store))
    finally:
        engine.close()
    unchecked = "PII readability not checked: no key-encryption key (set TIMELINE_KEK or TIMELINE_KEK_FILE)"
    if json_out:
        emit(verify_json(report))
    else:
        for finding in [*report.findings, *report.access_findings, *report.policy_findings]:
            err.print(f"TAMPERED {finding}", highlight=False, soft_wrap=True)
        broken = len({f.customer_id for f in report.findings})
        problems = [f"{counted(broken, 'customer')} with findings"] if report.findings else []
        problems += ["the access log is broken"] if report.access_findings else []
        problems += ["the policy stream is broken"] if report.policy_findings else []
        state = "; ".join(problems) or "intact"
        out.print(f"verified {counted(report.customers, 'customer')}, {counted(report.events, 'event')}: {state}")
        if not report.pii_checked:
            out.print(unchecked, soft_wrap=True)
    if not report.intact:
        raise typer.Exit(1)


def init(
    ctx: typer.Context,
    db: Db = None,
    alongside_other_tables: Annotated[
        bool,
        typer.Option("--alongside-other-tables", help="Add timeline's tables to a database that holds other tables."),
    ] = False,
) -> None:
    """Create a timeline store (tables, triggers, the check value of its key-encryption key), or check one."""
    from timeline.store import shown_url

    url = settings(ctx).store_url(db)
    open_engine(ctx, url, alongside_other_tables=alongside_other_tables).close()
    out.print(f"timeline store ready at {shown_url(url)}", highlight=False)


def generate(
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, metavar="N", help="How many customers.")] = 1000,
    years: Annotated[float, typer.Option(min=0.1, max=30, metavar="YEARS", help="How many years of history.")] = 3,
    seed: Annotated[int, typer.Option(metavar="N", help="Same seed, same output.")] = 1,
    end: Annotated[
        str | None,
        typer.Option(
            metavar="DATE",
            help="Last day of the history, YYYY-MM-DD; it ends at 18:00 +08:00 (default: the last such day).",
        ),
    ] = None,
    out_path: Annotated[
        str, typer.Option("--out", metavar="FILE", help="Output file, or - for standard output.")
    ] = "-",
) -> None:
    """Write a realistic branch history as JSON Lines, deterministic per seed and end date."""
    import datetime as dt

    from timeline.synthetic.generate import generate_branch, last_full_day, write_jsonl

    try:
        last_day = dt.date.fromisoformat(end) if end else last_full_day(dt.datetime.now(dt.UTC))
    except ValueError:
        raise TimelineError(f"--end must be a date YYYY-MM-DD, got {end!r}") from None
    events = generate_branch(customers, years, seed, last_day)
    if out_path == "-":
        count = write_jsonl(events, sys.stdout)
    else:
        with open(out_path, "w", encoding="utf-8") as fh:
            count = write_jsonl(events, fh)
    err.print(
        f"generated {counted(count, 'event')} for {counted(customers, 'customer')} over {counted(years, 'year')}",
        highlight=False,
    )


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Option("--dir", metavar="DIR", help="Where to write the schema files.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schemas (draft 2020-12) of every event type (input event, published data) and of the policy."""
    from timeline.domain.schemas import export_schemas

    for path in export_schemas(directory):
        out.print(str(path))


def register(app: typer.Typer, panel: str) -> None:
    """Add these commands to ``app`` under the help panel ``panel``."""
    for command in (init, ingest, history, verify, generate):
        app.command(rich_help_panel=panel)(command)
    app.add_typer(schemas_app, name="schemas", rich_help_panel=panel)
