"""The ``timeline`` command: user mistakes become one line on stderr and exit 2."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from timeline.engine import open_engine
from timeline.errors import TimelineError
from timeline.ingest import Summary
from timeline.jsonl import check_utf8, read_lines
from timeline.process import tune_gc_for_bulk_work
from timeline.recorded import iso

app = typer.Typer(
    help="Event-sourced customer timelines for banks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schemas_app = typer.Typer(help="JSON Schemas of the events.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")

err = Console(stderr=True)
out = Console(highlight=False)

Db = Annotated[
    str | None,
    typer.Option("--db", envvar="TIMELINE_DB", help="sqlite:///PATH (default ./timeline.db) or postgresql://…"),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="JSON Lines file, or - for standard input.")],
    db: Db = None,
    atomic: Annotated[bool, typer.Option("--atomic", help="Store all events of the input or none.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Events per transaction.")] = 2000,
) -> None:
    """Ingest events; rejects go to stderr as JSON lines, then a summary line."""
    if path != "-":
        if not Path(path).is_file():
            raise TimelineError(f"no such file: {path}")
        check_utf8(path)
    engine = open_engine(db)
    summary = Summary()
    try:
        with _input(path) as lines:
            for outcome in engine.ingestor(batch_size=batch_size).ingest(read_lines(lines), atomic=atomic):
                summary.add(outcome)
                if outcome.status == "rejected":
                    sys.stderr.write(json.dumps(outcome.to_json(), ensure_ascii=False) + "\n")
    finally:
        engine.close()
    sys.stderr.write(json.dumps({"summary": summary.to_json()}) + "\n")
    if summary.rejected:
        raise typer.Exit(1)


class _input:
    """The input's lines, with a progress bar over bytes when stderr is a terminal."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> Any:
        self.progress = Progress(
            TextColumn("ingesting"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
            console=err, transient=True, disable=not err.is_terminal,
        )
        self.progress.start()
        if self.path == "-":
            return sys.stdin.buffer
        self.fh = self.progress.open(self.path, "rb")
        return self.fh

    def __exit__(self, *exc: object) -> None:
        if self.path != "-":
            self.fh.close()
        self.progress.stop()


@app.command()
def history(customer_id: str, db: Db = None, json_out: Json = False) -> None:
    """A customer's events in business order, with recorded_at, position and PII as stored."""
    engine = open_engine(db)
    try:
        from timeline.keyring import load_history

        stored = load_history(engine.store, engine.keyring(), customer_id)
        events = sorted(stored, key=lambda e: (e.occurred_at, e.position))
    finally:
        engine.close()
    if not events:
        raise TimelineError(f"unknown customer {customer_id}: no events stored")
    if json_out:
        for e in events:
            _emit({**e.envelope(), "recorded_at": iso(e.recorded_at), "position": e.position, "version": e.version})
        return
    table = Table(title=f"customer {customer_id}", show_lines=False)
    for col in ("occurred_at", "recorded_at", "pos", "type", "data"):
        table.add_column(col)
    for e in events:
        data = ", ".join(f"{k}={_show(v)}" for k, v in e.data.items())
        table.add_row(iso(e.occurred_at), iso(e.recorded_at), str(e.position), e.type, data)
    out.print(table)


def _show(value: Any) -> str:
    if isinstance(value, dict) and value.get("$erased"):
        return "‹erased›"
    if isinstance(value, dict) and value.get("$encrypted"):
        return "‹encrypted›"
    return str(value)


@app.command()
def verify(
    db: Db = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Verify one customer only.")] = None,
    json_out: Json = False,
) -> None:
    """Recompute every hash chain; name the first altered, inserted or missing event."""
    from timeline.verify import verify as run_verify

    engine = open_engine(db)
    try:
        report = run_verify(engine.store, customer)
    finally:
        engine.close()
    if json_out:
        _emit({"intact": report.intact, "customers": report.customers, "events": report.events,
               "findings": [f.to_json() for f in report.findings]})
    else:
        for finding in report.findings:
            err.print(f"TAMPERED {finding}", highlight=False, soft_wrap=True)
        state = "intact" if report.intact else f"{len(report.findings)} customer(s) with broken chains"
        out.print(f"verified {report.customers} customers, {report.events} events: {state}")
    if not report.intact:
        raise typer.Exit(1)


@app.command()
def generate(
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many customers.")] = 1000,
    years: Annotated[float, typer.Option(min=0.1, max=30, help="How many years of history.")] = 3,
    seed: Annotated[int, typer.Option(help="Same seed, same output.")] = 1,
    end: Annotated[str | None, typer.Option(help="Last day of the history, YYYY-MM-DD (default: today).")] = None,
    out_path: Annotated[str, typer.Option("--out", help="Output file, or - for standard output.")] = "-",
) -> None:
    """Write a realistic branch history as JSON Lines, deterministic per seed and end date."""
    import datetime as dt

    from timeline.generate import generate_branch, write_jsonl

    try:
        last_day = dt.date.fromisoformat(end) if end else dt.date.today()
    except ValueError:
        raise TimelineError(f"--end must be a date YYYY-MM-DD, got {end!r}") from None
    events = generate_branch(customers, years, seed, last_day)
    if out_path == "-":
        count = write_jsonl(events, sys.stdout)
    else:
        with open(out_path, "w", encoding="utf-8") as fh:
            count = write_jsonl(events, fh)
    err.print(f"generated {count} events for {customers} customers over {years:g} years", highlight=False)


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the schema files.")] = Path("schemas"),
) -> None:
    """Write one JSON Schema (draft 2020-12) per event type."""
    from timeline.schemas import export_schemas

    for path in export_schemas(directory):
        out.print(str(path))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_gc_for_bulk_work()
    try:
        app()
    except TimelineError as exc:
        err.print(f"timeline: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
