"""The ``timeline`` command: user mistakes become one line on stderr and exit 2."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from timeline.application.batch import Summary
from timeline.application.jsonl import check_utf8, read_lines
from timeline.application.process import tune_gc_for_bulk_work
from timeline.cli.consumers import register as register_consumer_commands
from timeline.cli.relay import relay_command
from timeline.domain.errors import TimelineError
from timeline.domain.recorded import iso
from timeline.engine import open_engine

app = typer.Typer(
    help="Event-sourced customer timelines for banks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schemas_app = typer.Typer(help="JSON Schemas of the events.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.command("relay")(relay_command)
register_consumer_commands(app)

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
    engine = open_engine(db, alongside_other_tables=False)
    summary = Summary()
    try:
        with _input(path) as lines:
            for outcome in engine.ingestor(batch_size=batch_size).ingest(read_lines(lines), atomic=atomic):
                summary.add(outcome)
                if outcome.status == "rejected":
                    sys.stderr.write(_printable(json.dumps(outcome.to_json(), ensure_ascii=False)) + "\n")
    finally:
        engine.close()
    sys.stderr.write(json.dumps({"summary": summary.to_json()}) + "\n")
    if summary.rejected:
        raise typer.Exit(1)


def _printable(text: str) -> str:
    """``text`` with any lone surrogate (quoted from hostile input) written as its escape, never an encoding error."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _input:
    """The input's stream, with a progress bar over bytes when stderr is a terminal.

    A stream, not its lines: :class:`~timeline.application.jsonl.JsonLines` reads it a
    bounded line at a time, so an over-long line is never held whole.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> Any:
        self.progress = Progress(
            TextColumn("ingesting"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
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
    engine = open_engine(db, keys=False, create=False)
    try:
        from timeline.application.keyring import load_history

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
    from timeline.cli.report import render_history

    out.print(render_history(customer_id, events))


@app.command()
def verify(
    db: Db = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Verify one customer only.")] = None,
    json_out: Json = False,
) -> None:
    """Recompute every hash chain and check every key; name the first altered, inserted or missing event."""
    from timeline.application.verify import verify as run_verify

    engine = open_engine(db, keys=False, create=False)
    try:
        report = run_verify(engine.store, customer, _verify_wrapper(engine.store))
    finally:
        engine.close()
    unchecked = "PII readability not checked: no key-encryption key (set TIMELINE_KEK or TIMELINE_KEK_FILE)"
    if json_out:
        _emit(
            {
                "intact": report.intact,
                "customers": report.customers,
                "events": report.events,
                "pii_checked": report.pii_checked,
                "findings": [f.to_json() for f in report.findings],
            }
        )
    else:
        for finding in report.findings:
            err.print(f"TAMPERED {finding}", highlight=False, soft_wrap=True)
        broken = len({f.customer_id for f in report.findings})
        state = "intact" if report.intact else f"{broken} customer(s) with findings"
        out.print(f"verified {report.customers} customers, {report.events} events: {state}")
        if not report.pii_checked:
            out.print(unchecked, soft_wrap=True)
    if not report.intact:
        raise typer.Exit(1)


def _verify_wrapper(store: Any) -> Any:
    """The store's key-encryption key's wrapper if one is configured, else ``None`` (verify then skips PII).

    Never creates a key file; a ``TIMELINE_KEK`` that is set but unusable, or not the store's, is an error.
    """
    import os

    from timeline.crypto import KeyWrapper, kek_for_store
    from timeline.domain.errors import ConfigurationError

    try:
        kek = kek_for_store(store, may_create=False)
    except ConfigurationError:
        if os.environ.get("TIMELINE_KEK"):
            raise
        return None
    wrapper = KeyWrapper(kek, store)
    wrapper.check(writing=False)
    return wrapper


@app.command()
def generate(
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many customers.")] = 1000,
    years: Annotated[float, typer.Option(min=0.1, max=30, help="How many years of history.")] = 3,
    seed: Annotated[int, typer.Option(help="Same seed, same output.")] = 1,
    end: Annotated[
        str | None,
        typer.Option(help="Last day of the history, YYYY-MM-DD; it ends at 18:00 +08:00 (default: the last such day)."),
    ] = None,
    out_path: Annotated[str, typer.Option("--out", help="Output file, or - for standard output.")] = "-",
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
    err.print(f"generated {count} events for {customers} customers over {years:g} years", highlight=False)


AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Business time: ISO instant with offset, or a date (its end). Default: now."),
]
KnownAt = Annotated[
    str | None,
    typer.Option("--known-at", help="System time: count only events recorded by then. Default: now."),
]
PolicyOpt = Annotated[str | None, typer.Option("--policy", envvar="TIMELINE_POLICY", help="Policy id or .json file.")]


def _times(policy: Any, as_of: str | None, known_at: str | None) -> tuple[Any, Any]:
    import datetime as dt

    from timeline.domain.instants import parse_instant

    now = dt.datetime.now(dt.UTC)
    return parse_instant(as_of, policy.time_zone, now), parse_instant(known_at, policy.time_zone, now)


@app.command()
def state(
    customer_id: Annotated[str | None, typer.Argument(help="The customer (or --all).")] = None,
    all_customers: Annotated[bool, typer.Option("--all", help="Every customer, one JSON line each.")] = False,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Tier, lifecycle stage, points and AUM as of a business time, as known at a system time."""
    from timeline.application.states import StateReader

    if all_customers == (customer_id is not None):
        raise TimelineError("give a CUSTOMER_ID or --all")
    engine = open_engine(db, policy=policy, keys=False, create=False)
    try:
        q, k = _times(engine.policy, as_of, known_at)
        reader = StateReader(engine.store, engine.policy)
        if all_customers:
            if not json_out:
                raise TimelineError("state --all writes JSON lines: add --json")
            with _log_progress("reading the log") as advance:
                for s in reader.all_states(q, k, progress=advance):
                    _emit(s.to_json())
            return
        result = reader.state(customer_id, q, k)  # type: ignore[arg-type]
    finally:
        engine.close()
    if json_out:
        _emit(result.to_json())
        return
    from timeline.cli.report import render_state

    out.print(render_state(result))


@app.command()
def explain(
    customer_id: str,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Why: the rule behind tier, stage and points, the events it rests on, and the points ledger."""
    from timeline.application.states import StateReader

    engine = open_engine(db, policy=policy, keys=False, create=False)
    try:
        q, k = _times(engine.policy, as_of, known_at)
        result = StateReader(engine.store, engine.policy).state(customer_id, q, k)
    finally:
        engine.close()
    if json_out:
        _emit(result.explain_json())
        return
    from timeline.cli.report import render_explanation

    out.print(render_explanation(result))


@app.command()
def followups(
    rm: Annotated[str | None, typer.Option("--rm", help="Only this relationship manager's.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Only this branch's.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue ones.")] = False,
    as_of: AsOf = None,
    db: Db = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Open follow-ups per relationship manager and branch; overdue when due before today."""
    from timeline.application.states import StateReader

    engine = open_engine(db, policy=policy, keys=False, create=False)
    try:
        q, k = _times(engine.policy, as_of, None)
        with _log_progress("reading the log") as advance:
            states = list(StateReader(engine.store, engine.policy).all_states(q, k, progress=advance))
    finally:
        engine.close()
    items = [
        f
        for s in states
        for f in s.followups
        if (rm is None or f.relationship_manager == rm)
        and (branch is None or f.branch_id == branch)
        and (not overdue or f.overdue)
    ]
    items.sort(key=lambda f: (f.branch_id or "", f.relationship_manager or "", f.due_date, f.customer_id))
    if json_out:
        for f in items:
            _emit(f.to_json())
        return
    from timeline.cli.report import render_followups

    out.print(render_followups(items))


@app.command()
def requalify(db: Db = None, json_out: Json = False) -> None:
    """Decide every referral qualification again (RULES §5) and append any that is missing."""
    engine = open_engine(db, create=False)
    try:
        outcomes = engine.requalify()
    finally:
        engine.close()
    appended = [o for o in outcomes if o.status == "accepted"]
    if json_out:
        _emit({"appended": [str(o.event_id) for o in appended]})
    else:
        out.print(f"{len(appended)} referral qualification(s) appended")


@app.command()
def init(
    db: Db = None,
    alongside_other_tables: Annotated[
        bool,
        typer.Option("--alongside-other-tables", help="Add timeline's tables to a database that holds other tables."),
    ] = False,
) -> None:
    """Create a timeline store (tables, triggers, the check value of its key-encryption key), or check one."""
    from timeline.store import resolve_url, shown_url

    open_engine(db, alongside_other_tables=alongside_other_tables).close()
    out.print(f"timeline store ready at {shown_url(resolve_url(db))}", highlight=False)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=10, max=100_000, help="Customers in the branch.")] = 2000,
    years: Annotated[float, typer.Option(min=0.5, max=10, help="Years of history.")] = 3,
    seed: Annotated[int, typer.Option(help="Same seed, same branch.")] = 1,
    db: Annotated[
        str, typer.Option("--db", help="Where the demo branch is stored (recreated).")
    ] = "sqlite:///timeline-demo.db",
) -> None:
    """Generate a realistic branch, ingest it, and show what a branch head wants to see."""
    from timeline.cli.demo import run_demo

    run_demo(customers, years, seed, db, err, out)


class _log_progress:
    """A progress bar over log positions, on stderr when it is a terminal."""

    def __init__(self, label: str) -> None:
        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),  # copes with a total not known yet
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
            redirect_stdout=False,  # JSON lines stream to stdout while the bar runs on stderr
        )

    def __enter__(self) -> Any:
        self.progress.start()
        task = self.progress.add_task("log", total=None)

        def advance(position: int, head: int) -> None:
            self.progress.update(task, completed=position, total=head)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the schema files.")] = Path("schemas"),
) -> None:
    """Write the JSON Schemas (draft 2020-12) of every event type: the input event and the published data."""
    from timeline.domain.schemas import export_schemas

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
