"""Running the pipeline: ``status`` (how far each stage has got), ``tick`` and ``rebuild NAME``."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from timeline.cli.consumer_options import (
    Bootstrap,
    Now,
    ReadDb,
    StoreDb,
    Topic,
    instant,
    kafka,
    load,
    one_of,
    plural,
    read_db,
    store_url,
    versions_store,
)
from timeline.cli.options import Json, PolicyOpt
from timeline.cli.output import emit, err, out
from timeline.consumers.readmodels.registry import READ_MODELS, read_model
from timeline.domain.errors import TimelineError

rebuild_app = typer.Typer(help="Rebuild a read model into new tables and swap it in atomically.", no_args_is_help=True)


def tick_command(
    ctx: typer.Context,
    db: ReadDb = None,
    store: StoreDb = None,
    now: Now = None,
    consumer: Annotated[
        str,
        typer.Option("--consumer", metavar="NAME", help=f"{', '.join(READ_MODELS)} or all (those whose tables exist)."),
    ] = "all",
    policy: PolicyOpt = None,
    json_out: Json = False,
) -> None:
    """Re-evaluate the rows whose next change has come (no new event needed), so the views are right as of now."""
    from timeline.consumers.readmodels import database
    from timeline.consumers.readmodels.evaluation import utcnow

    one_of("--consumer", consumer, [*READ_MODELS, "all"])
    url = read_db(ctx, db, store)
    pol = load(ctx, policy)
    at = instant(now, pol.time_zone) or utcnow()
    with database.connect(url) as conn:
        present = {n for n, m in READ_MODELS.items() if database.table_exists(conn, f"{m.prefix}_streams")}
    wanted = [n for n in READ_MODELS if consumer == n or (consumer == "all" and n in present)]
    result = {}
    for name in wanted:
        c = READ_MODELS[name].consumer(
            url, "", "", policy=pol, clock=lambda: at, store_url=versions_store(ctx, db, store)
        )
        try:
            result[name] = c.tick(at)
        finally:
            c.close()
    if json_out:
        from timeline.domain.recorded import iso

        emit({"now": iso(at), "reevaluated": result})
    else:
        for name, n in result.items():
            err.print(f"{name}: re-evaluated {plural(n, 'customer')}", highlight=False, soft_wrap=True)


def status_command(
    ctx: typer.Context,
    store: StoreDb = None,
    db: ReadDb = None,
    bootstrap: Bootstrap = None,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", metavar="TOPIC", help="Only groups on this topic (repeatable; default all)."),
    ] = None,
    json_out: Json = False,
) -> None:
    """The store's head, each relay's position, every consumer group's lag and the read model's rows.

    Exit 1 if the store, the read model or the broker cannot be reached (each is named); 2 if there is no store.
    """
    from timeline.consumers.status import status

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    servers, _ = kafka(ctx, bootstrap, None)
    report = status(store_url(ctx, store), read_db(ctx, db, store), servers, topic or None)
    if json_out:
        emit(report)
    else:
        _print_status(report)
    if report["errors"]:
        raise typer.Exit(2 if report["missing_store"] else 1)


def _print_status(report: dict[str, Any]) -> None:
    s = report.get("store") or {}
    problems = []
    if report["missing_store"]:
        problems.append(("store", s["error"]))
    elif "error" in s:
        problems.append(("store", f"unreachable: {s['error']}"))
    if report.get("kafka_error"):
        problems.append(("kafka", report["kafka_error"]))
    read_error = (report.get("read_model") or {}).get("error")
    if read_error:
        problems.append(("read model", f"unreachable: {read_error}"))
    if problems:
        _section("not reachable", ("part", "why"), problems)
    if s and "error" not in s:
        relays = [(r["name"], r["topic"], str(r["position"]), str(r["behind"])) for r in s["relays"]]
        _section(f"store head position: {s['head']}", ("relay", "topic", "position", "behind"), relays,
                 empty="relay: has not run")  # fmt: skip
    topics = [(name, str(t["partitions"]), str(t["messages"])) for name, t in report["topics"].items()]
    if topics:
        _section("topics", ("topic", "partitions", "messages"), topics)
    for g in report["groups"]:
        rows = [
            [f"{p['topic']}/{p['partition']}"]
            + [
                "" if v is None else str(v)
                for v in (p["start"], p["end"], p["committed"], p.get("saved"), p.get("saved_lag", p["lag"]))
            ]
            for p in g["partitions"]
        ]
        dead = f", {plural(g['dead_letters'], 'dead letter')}" if g["dead_letters"] else ""
        lag = "unknown" if g["lag"] is None else g["lag"]
        columns = ("topic/partition", "start", "end", "committed", "saved", "lag")
        _section(f"group {g['group']}: lag {lag}{dead}", columns, rows)
    summary = (report.get("read_model") or {}).get("summary")
    if summary:
        rows = [("tier", name, str(n)) for name, n in summary["tiers"].items()]
        rows += [("stage", name, str(n)) for name, n in summary["lifecycles"].items()]
        title = f"customer_summary: {plural(summary['customers'], 'row')}, {summary['stale']} due for a tick"
        _section(title, ("by", "value", "rows"), rows)


def _section(heading: str, columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "") -> None:
    """A heading on a line of its own (never squeezed to the table's width), then the table or ``empty``."""
    out.print(heading, soft_wrap=True)
    if not rows:
        if empty:
            out.print(f"  {empty}", soft_wrap=True)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _rebuild_command(name: str) -> Any:
    def rebuild(
        ctx: typer.Context,
        source: Annotated[
            str, typer.Option("--from", metavar="store|topic", help="store (the event store) or topic (from offset 0).")
        ] = "store",
        db: ReadDb = None,
        store: StoreDb = None,
        bootstrap: Bootstrap = None,
        topic: Topic = None,
        group: Annotated[
            str | None,
            typer.Option(
                "--group", metavar="GROUP", help="The consumer's group, for --from topic (default timeline-summary)."
            ),
        ] = None,
        now: Now = None,
        policy: PolicyOpt = None,
        json_out: Json = False,
    ) -> None:
        servers, topic_name = kafka(ctx, bootstrap, topic)
        pol = load(ctx, policy)
        # the events' store from --store or TIMELINE_DB; from the topic, the store holding the policy versions
        versions = store_url(ctx, store) if source == "store" else versions_store(ctx, db, store)
        _rebuild(name, source, read_db(ctx, db, store), versions, servers, topic_name, group, pol,
                 instant(now, pol.time_zone), json_out)  # fmt: skip

    return rebuild


for _model in READ_MODELS.values():
    if _model.rebuild_path:
        rebuild_app.command(
            _model.name,
            help=f"Rebuild {_model.name} into new tables and swap them in atomically; queries answer meanwhile.",
        )(_rebuild_command(_model.name))


def _rebuild(
    name: str,
    source: str,
    url: str,
    store_url: str,
    bootstrap: str,
    topic: str,
    group: str | None,
    pol: Any,
    fixed: dt.datetime | None,
    json_out: bool,
) -> None:
    from timeline.consumers.readmodels.evaluation import utcnow

    model = read_model(name)
    rebuild = model.rebuild
    if rebuild is None:
        raise TimelineError(f"the {name} read model cannot be rebuilt")
    one_of("--from", source, ("store", "topic"))
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
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
            url,
            source,
            store_url=store_url,
            bootstrap=bootstrap,
            topic=topic,
            group=group or model.consumer.default_group,
            policy=pol,
            clock=(lambda: fixed) if fixed else utcnow,
            progress=advance,
        )
    if json_out:
        emit(result.to_json())
    else:
        err.print(
            f"rebuilt customer_summary from the {source}: {plural(result.customers, 'customer')}, "
            f"{plural(result.events, 'event')} in {result.seconds:.1f}s (swap {result.swap_seconds * 1000:.0f} ms, "
            f"{plural(result.merged, 'customer')} merged from the running consumer)",
            highlight=False,
            soft_wrap=True,
        )
