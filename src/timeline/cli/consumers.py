"""The read-model commands: ``consume summary|alerts``, ``tick``, ``summary …``, ``alerts``, ``status``, ``rebuild``.

Registered on the main app by :func:`register` (see :mod:`timeline.cli.main`).
The read model lives in PostgreSQL: ``--db`` (``TIMELINE_READ_DB``, else the
store's ``TIMELINE_DB``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from timeline.cli.report import listing
from timeline.domain.errors import TimelineError

err = Console(stderr=True)
out = Console(highlight=False)

consume_app = typer.Typer(
    help="Run a consumer group that keeps a view up to date from the topic.", no_args_is_help=True
)
summary_app = typer.Typer(help="Query the customer_summary read model.", no_args_is_help=True)
rebuild_app = typer.Typer(help="Rebuild a read model into new tables and swap it in atomically.", no_args_is_help=True)

ReadDb = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=["TIMELINE_READ_DB", "TIMELINE_DB"],
        help="Read-model database, postgresql://… (default TIMELINE_READ_DB, else TIMELINE_DB).",
    ),
]
StoreDb = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="TIMELINE_DB", help="The event store (TIMELINE_DB): sqlite:///PATH or postgresql://…"
    ),
]
Bootstrap = Annotated[
    str, typer.Option("--bootstrap", envvar="TIMELINE_KAFKA", help="Kafka bootstrap servers, host:port[,…].")
]
Topic = Annotated[str, typer.Option("--topic", envvar="TIMELINE_TOPIC", help="The topic the relay publishes to.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Now = Annotated[
    str | None,
    typer.Option(
        "--now", help="Evaluate as of this instant (ISO 8601 with offset) instead of the clock: replays, tests."
    ),
]
PolicyOpt = Annotated[str | None, typer.Option("--policy", envvar="TIMELINE_POLICY", help="Policy id or .json file.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Also log the Kafka client's own warnings.")]

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_TOPIC = "customer-events"


def register(app: typer.Typer) -> None:
    """Add the read-model commands to the ``timeline`` app."""
    app.add_typer(consume_app, name="consume")
    app.add_typer(summary_app, name="summary")
    app.add_typer(rebuild_app, name="rebuild")
    app.command("tick")(tick_command)
    app.command("alerts")(alerts_command)
    app.command("status")(status_command)


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def _read_db(db: str | None) -> str:
    if not db:
        raise TimelineError("no read-model database: give --db postgresql://… (or set TIMELINE_READ_DB)")
    return db


def _policy(policy: str | None) -> Any:
    from timeline.domain.policy import load_policy

    return load_policy(policy) if policy else load_policy()


def _instant(text: str | None, time_zone: str, start_of_day: bool = False) -> dt.datetime | None:
    """ISO instant with offset, or a date: its end (``start_of_day``: its beginning) in the policy's zone."""
    if text is None:
        return None
    from zoneinfo import ZoneInfo

    from timeline.domain.instants import parse_instant

    text = text.strip()
    if start_of_day and len(text) == 10:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise TimelineError(f"not a date or an ISO 8601 instant: {text!r}") from None
        return dt.datetime.combine(day, dt.time(), ZoneInfo(time_zone)).astimezone(dt.UTC)
    return parse_instant(text, time_zone, dt.datetime.now(dt.UTC))


def _logging(verbose: bool) -> None:
    for name in ("timeline.consumers.projecting", "timeline.consumers.summary", "timeline.consumers.alerts"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.WARNING if verbose else logging.CRITICAL)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# -- consume ------------------------------------------------------------------------------------


def _consume(
    kind: str,
    db: str | None,
    bootstrap: str,
    topic: str,
    group: str | None,
    once: bool,
    idle_exit: float | None,
    now: str | None,
    tick_interval: float,
    max_batch: int,
    give_up_after: float,
    policy: str | None,
    json_out: bool,
    verbose: bool,
) -> None:
    from timeline.consumers.alerts import AlertsConsumer
    from timeline.consumers.backoff import GaveUp
    from timeline.consumers.projecting import utcnow
    from timeline.consumers.summary import SummaryConsumer

    _logging(verbose)
    pol = _policy(policy)
    fixed = _instant(now, pol.time_zone)
    cls = SummaryConsumer if kind == "summary" else AlertsConsumer
    consumer = cls(
        _read_db(db),
        bootstrap,
        topic,
        group=group,
        policy=pol,
        clock=(lambda: fixed) if fixed else utcnow,
        tick_interval=tick_interval,
        max_batch=max_batch,
        give_up_after=give_up_after if once else None,
    )

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("timeline.consumers.projecting").info("signal %d: finishing the batch in flight", signum)
        consumer.stop()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = consumer.run(until_caught_up=once, idle_exit=idle_exit)
    except GaveUp as exc:
        err.print(f"timeline: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        consumer.close()
    summary = {"consumer": kind, "group": consumer.group, "topic": topic, **stats.to_json()}
    if json_out:
        _emit(summary)
    else:
        err.print(
            f"{kind} consumer {consumer.group}: applied {stats.applied} events ({stats.duplicates} repeats, "
            f"{stats.dead_letters} dead letters) in {stats.elapsed:.1f}s",
            highlight=False,
        )


Group = Annotated[
    str | None, typer.Option("--group", help="Consumer group (default timeline-summary / timeline-alerts).")
]
Once = Annotated[bool, typer.Option("--once", help="Stop when caught up with every assigned partition.")]
IdleExit = Annotated[
    float | None, typer.Option("--idle-exit", min=0.1, help="Stop after this many seconds without a message.")
]
TickInterval = Annotated[
    float, typer.Option("--tick-interval", min=0, help="Seconds between re-evaluations of due rows (0: never).")
]
GiveUpAfter = Annotated[
    float,
    typer.Option(
        "--give-up-after",
        min=1.0,
        help="With --once: exit 1 after this many seconds without reaching the broker or the database.",
    ),
]
GIVE_UP_AFTER = 30.0
MaxBatch = Annotated[int, typer.Option("--max-batch", min=1, max=200_000, help="Most messages per transaction.")]


@consume_app.command("summary")
def consume_summary(
    db: ReadDb = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: Topic = DEFAULT_TOPIC,
    group: Group = None,
    once: Once = False,
    idle_exit: IdleExit = None,
    now: Now = None,
    tick_interval: TickInterval = 60.0,
    max_batch: MaxBatch = 20_000,
    give_up_after: GiveUpAfter = GIVE_UP_AFTER,
    policy: PolicyOpt = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Keep customer_summary (and tier moves) up to date, each message applied exactly once."""
    _consume("summary", db, bootstrap, topic, group, once, idle_exit, now, tick_interval, max_batch,
             give_up_after, policy, json_out, verbose)  # fmt: skip


@consume_app.command("alerts")
def consume_alerts(
    db: ReadDb = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: Topic = DEFAULT_TOPIC,
    group: Group = None,
    once: Once = False,
    idle_exit: IdleExit = None,
    now: Now = None,
    tick_interval: TickInterval = 60.0,
    max_batch: MaxBatch = 20_000,
    give_up_after: GiveUpAfter = GIVE_UP_AFTER,
    policy: PolicyOpt = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Alert (table `alerts` and a log line) when a customer becomes at-risk or drops a tier, with why."""
    _consume("alerts", db, bootstrap, topic, group, once, idle_exit, now, tick_interval, max_batch,
             give_up_after, policy, json_out, verbose)  # fmt: skip


# -- tick ---------------------------------------------------------------------------------------


def tick_command(
    db: ReadDb = None,
    now: Now = None,
    consumer: Annotated[
        str, typer.Option("--consumer", help="summary, alerts or all (those whose tables exist).")
    ] = "all",
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Re-evaluate the rows whose next change has come (no new event needed), so the views are right as of now."""
    from timeline.consumers import readmodel
    from timeline.consumers.alerts import AlertsConsumer
    from timeline.consumers.projecting import utcnow
    from timeline.consumers.summary import SummaryConsumer

    if consumer not in ("summary", "alerts", "all"):
        raise TimelineError(f"--consumer is summary, alerts or all, not {consumer!r}")
    url = _read_db(db)
    pol = _policy(policy)
    at = _instant(now, pol.time_zone) or utcnow()
    with readmodel.connect(url) as conn:
        present = {p for p in ("summary", "alerts") if readmodel.table_exists(conn, f"{p}_streams")}
    wanted = [p for p in ("summary", "alerts") if consumer in (p, "all") and (p in present or consumer == p)]
    result = {}
    for kind in wanted:
        cls = SummaryConsumer if kind == "summary" else AlertsConsumer
        c = cls(url, "", "", policy=pol, clock=lambda: at)
        try:
            result[kind] = c.tick(at)
        finally:
            c.close()
    if json_out:
        from timeline.domain.recorded import iso

        _emit({"now": iso(at), "reevaluated": result})
    else:
        for kind, n in result.items():
            err.print(f"{kind}: re-evaluated {n} customer(s)", highlight=False)


# -- queries ------------------------------------------------------------------------------------


def _rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    return listing(title, columns, cells, whole=("customer_id",))


@summary_app.command("list")
def summary_list(
    tier: Annotated[str | None, typer.Option("--tier", help="Only this tier, e.g. affluent.")] = None,
    lifecycle: Annotated[str | None, typer.Option("--lifecycle", help="Only this stage, e.g. at_risk.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Only this branch.")] = None,
    rm: Annotated[str | None, typer.Option("--rm", help="Only this relationship manager's.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows.")] = None,
    db: ReadDb = None,
    json_out: Json = False,
) -> None:
    """Customers by tier, lifecycle stage, branch and relationship manager."""
    from timeline.consumers import readmodel

    with readmodel.connect(_read_db(db)) as conn:
        _require_summary(conn)
        rows = [r.to_json() for r in readmodel.list_customers(conn, tier, lifecycle, branch, rm, limit)]
    if json_out:
        for r in rows:
            _emit(r)
        return
    cols = ["customer_id", "branch_id", "relationship_manager", "tier", "lifecycle", "points", "aum",
            "last_activity_at", "next_change_at"]  # fmt: skip
    out.print(_rows_table(f"{len(rows)} customer(s)", rows, cols))


@summary_app.command("moves")
def summary_moves(
    start: Annotated[str, typer.Option("--from", help="From this date (its start) or instant.")],
    end: Annotated[str, typer.Option("--to", help="To this date (its end) or instant.")],
    direction: Annotated[str | None, typer.Option("--direction", help="up or down.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Only this branch.")] = None,
    db: ReadDb = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Who moved tier between two dates, with the rule and reason of each move."""
    from timeline.consumers import readmodel

    if direction not in (None, "up", "down"):
        raise TimelineError(f"--direction is up or down, not {direction!r}")
    pol = _policy(policy)
    lo, hi = _instant(start, pol.time_zone, start_of_day=True), _instant(end, pol.time_zone)
    assert lo is not None and hi is not None
    if hi < lo:
        raise TimelineError("--to is before --from")
    with readmodel.connect(_read_db(db)) as conn:
        _require_summary(conn)
        moves = [m.to_json() for m in readmodel.tier_moves(conn, lo, hi, direction, branch)]
    if json_out:
        for m in moves:
            _emit(m)
        return
    out.print(
        _rows_table(f"{len(moves)} tier move(s)", moves, ["at", "customer_id", "branch_id", "from", "to", "rule"])
    )


@summary_app.command("at-risk")
def summary_at_risk(
    branch: Annotated[str | None, typer.Option("--branch", help="Only this branch.")] = None,
    rm: Annotated[str | None, typer.Option("--rm", help="Only this relationship manager's.")] = None,
    db: ReadDb = None,
    json_out: Json = False,
) -> None:
    """Customers at risk of churning, with the rule that holds and why."""
    from timeline.consumers import readmodel

    with readmodel.connect(_read_db(db)) as conn:
        _require_summary(conn)
        rows = [r.at_risk_json() for r in readmodel.at_risk(conn, branch, rm)]
    if json_out:
        for r in rows:
            _emit(r)
        return
    cols = ["customer_id", "branch_id", "relationship_manager", "aum", "reason"]
    out.print(_rows_table(f"{len(rows)} customer(s) at risk", rows, cols))


def _require_summary(conn: Any) -> None:
    from timeline.consumers import readmodel

    if not readmodel.table_exists(conn, readmodel.SUMMARY_TABLE):
        raise TimelineError(
            "no customer_summary here yet: run `timeline consume summary` or `timeline rebuild summary`"
        )


def alerts_command(
    since: Annotated[str | None, typer.Option("--since", help="Only alerts at or after this date or instant.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="at_risk or tier_drop.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's.")] = None,
    db: ReadDb = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """The alerts `consume alerts` has raised, with their explanations."""
    from timeline.consumers import readmodel
    from timeline.consumers.alerts import list_alerts

    pol = _policy(policy)
    with readmodel.connect(_read_db(db)) as conn:
        if not readmodel.table_exists(conn, "alerts"):
            raise TimelineError("no alerts table here yet: run `timeline consume alerts`")
        rows = list_alerts(conn, _instant(since, pol.time_zone, start_of_day=True), kind, customer)
    if json_out:
        for r in rows:
            _emit(r)
        return
    for r in rows:
        r["why"] = r["explanation"].get("reason")
    out.print(_rows_table(f"{len(rows)} alert(s)", rows, ["at", "alert", "customer_id", "from", "to", "why"]))


# -- operations ---------------------------------------------------------------------------------


def status_command(
    store: StoreDb = None,
    db: ReadDb = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="Only groups on this topic (repeatable; default all).")
    ] = None,
    json_out: Json = False,
) -> None:
    """The store's head, each relay's position, every consumer group's lag and the read model's rows.

    Exit 1 if the store, the read model or the broker cannot be reached (each is named); 2 if there is no store.
    """
    from timeline.consumers.status import status
    from timeline.store import resolve_url

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    report = status(resolve_url(store), db or resolve_url(store), bootstrap, topic or None)
    if json_out:
        _emit(report)
    else:
        _print_status(report)
    if report["errors"]:
        raise typer.Exit(2 if report["missing_store"] else 1)


def _print_status(report: dict[str, Any]) -> None:
    s = report.get("store") or {}
    if report["missing_store"]:
        out.print(f"store: {s['error']}")
    elif "error" in s:
        out.print(f"store: unreachable ({s['error']})")
    elif s:
        out.print(f"store head position: {s['head']}")
        for r in s["relays"]:
            out.print(f"relay {r['name']} → {r['topic']}: position {r['position']} ({r['behind']} behind)")
        if not s["relays"]:
            out.print("relay: has not run")
    if report.get("kafka_error"):
        out.print(f"kafka: unreachable ({report['kafka_error']})")
    read_error = (report.get("read_model") or {}).get("error")
    if read_error:
        out.print(f"read model: unreachable ({read_error})")
    for topic_name, t in report["topics"].items():
        out.print(f"topic {topic_name}: {t['partitions']} partition(s), {t['messages']} message(s)")
    rows = [
        [g["group"], f"{p['topic']}/{p['partition']}"]
        + [
            "" if v is None else str(v)
            for v in (p["start"], p["end"], p["committed"], p.get("saved"), p.get("saved_lag", p["lag"]))
        ]
        for g in report["groups"]
        for p in g["partitions"]
    ]
    columns = ("group", "topic/partition", "start", "end", "committed", "saved", "lag")
    if report["groups"]:
        out.print(listing("consumer groups", columns, rows))
        for g in report["groups"]:
            dead = f", {g['dead_letters']} dead letter(s)" if g["dead_letters"] else ""
            lag = "unknown" if g["lag"] is None else g["lag"]
            out.print(f"group {g['group']}: lag {lag}{dead}")
    summary = (report.get("read_model") or {}).get("summary")
    if summary:
        out.print(
            f"customer_summary: {summary['customers']} row(s), {summary['stale']} due for a tick; "
            f"tiers {_counts(summary['tiers'])}; stages {_counts(summary['lifecycles'])}"
        )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


@rebuild_app.command("summary")
def rebuild_summary(
    source: Annotated[str, typer.Option("--from", help="store (the event store) or topic (from offset 0).")] = "store",
    db: ReadDb = None,
    store: StoreDb = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: Topic = DEFAULT_TOPIC,
    group: Annotated[str, typer.Option("--group", help="The summary consumer's group (for --from topic).")] = (
        "timeline-summary"
    ),
    now: Now = None,
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Rebuild customer_summary into new tables and swap them in atomically; queries keep answering meanwhile."""
    from timeline.consumers.projecting import utcnow
    from timeline.consumers.summary import rebuild
    from timeline.store import resolve_url

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    pol = _policy(policy)
    fixed = _instant(now, pol.time_zone)
    store_url = resolve_url(store)
    url = db or store_url
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),  # copes with a total not known yet
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def advance(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    with progress:
        result = rebuild(
            _read_db(url),
            source,
            store_url=store_url,
            bootstrap=bootstrap,
            topic=topic,
            group=group,
            policy=pol,
            clock=(lambda: fixed) if fixed else utcnow,
            progress=advance,
        )
    if json_out:
        _emit(result.to_json())
    else:
        err.print(
            f"rebuilt customer_summary from the {source}: {result.customers} customers, {result.events} events "
            f"in {result.seconds:.1f}s (swap {result.swap_seconds * 1000:.0f} ms, "
            f"{result.merged} customer(s) merged from the running consumer)",
            highlight=False,
        )
