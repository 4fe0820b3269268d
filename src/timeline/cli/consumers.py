"""The read-model commands: ``consume NAME`` here; queries in :mod:`.readmodels`; ``status``, ``tick``, ``rebuild``
in :mod:`.operations`. :func:`register` adds them all to the main app.

The read model lives in PostgreSQL: ``--db`` (``TIMELINE_READ_DB``), else the
store's database (``--store``, ``TIMELINE_DB``). Every read model named in
:mod:`timeline.consumers.readmodels.registry` gets a ``consume`` command.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Annotated, Any

import typer

from timeline.cli import operations, readmodels
from timeline.cli.consumer_options import (
    Bootstrap,
    MetricsPort,
    Now,
    ReadDb,
    StoreDb,
    Topic,
    Verbose,
    instant,
    kafka,
    load,
    plural,
    quiet_kafka,
    read_db,
    serve_metrics,
    versions_store,
)
from timeline.cli.logjson import LogJson, log_json
from timeline.cli.options import Json, PolicyOpt, settings
from timeline.cli.output import emit, err
from timeline.consumers.readmodels.registry import READ_MODELS

consume_app = typer.Typer(
    help="Run a consumer group that keeps a view up to date from the topic.", no_args_is_help=True
)

Group = Annotated[
    str | None,
    typer.Option("--group", metavar="GROUP", help="Consumer group (default timeline-summary / timeline-alerts)."),
]
Once = Annotated[bool, typer.Option("--once", help="Stop when caught up with every assigned partition.")]
IdleExit = Annotated[
    float | None,
    typer.Option("--idle-exit", min=0.1, metavar="SECONDS", help="Stop after this many seconds without a message."),
]
TickInterval = Annotated[
    float,
    typer.Option(
        "--tick-interval", min=0, metavar="SECONDS", help="Seconds between re-evaluations of due rows (0: never)."
    ),
]
GiveUpAfter = Annotated[
    float,
    typer.Option(
        "--give-up-after",
        min=1.0,
        metavar="SECONDS",
        help="With --once: exit 1 after this many seconds without reaching the broker or the database.",
    ),
]
GIVE_UP_AFTER = 30.0
MaxBatch = Annotated[
    int, typer.Option("--max-batch", min=1, max=200_000, metavar="N", help="Most messages per transaction.")
]


def register(app: typer.Typer) -> None:
    """Add the read-model commands to the ``timeline`` app."""
    app.add_typer(consume_app, name="consume")
    app.add_typer(readmodels.summary_app, name="summary")
    app.add_typer(operations.rebuild_app, name="rebuild")
    app.command("tick")(operations.tick_command)
    app.command("alerts")(readmodels.alerts_command)
    app.command("status")(operations.status_command)


def _consume_command(name: str) -> Callable[..., None]:
    def consume(
        ctx: typer.Context,
        db: ReadDb = None,
        store: StoreDb = None,
        bootstrap: Bootstrap = None,
        topic: Topic = None,
        group: Group = None,
        once: Once = False,
        idle_exit: IdleExit = None,
        now: Now = None,
        tick_interval: TickInterval = 60.0,
        max_batch: MaxBatch = 20_000,
        give_up_after: GiveUpAfter = GIVE_UP_AFTER,
        policy: PolicyOpt = None,
        metrics_port: MetricsPort = None,
        json_out: Json = False,
        verbose: Verbose = False,
        json_logs: LogJson = False,
    ) -> None:
        log_json(json_logs or settings(ctx).log_json)
        servers, topic_name = kafka(ctx, bootstrap, topic)
        _consume(name, read_db(ctx, db, store), versions_store(ctx, db, store), servers, topic_name, group, once,
                 idle_exit, now, tick_interval, max_batch, give_up_after, load(ctx, policy), metrics_port, json_out,
                 verbose)  # fmt: skip

    return consume


for _model in READ_MODELS.values():
    consume_app.command(_model.name, help=_model.description)(_consume_command(_model.name))


def _consume(
    name: str,
    url: str,
    store_url: str,
    bootstrap: str,
    topic: str,
    group: str | None,
    once: bool,
    idle_exit: float | None,
    now: str | None,
    tick_interval: float,
    max_batch: int,
    give_up_after: float,
    pol: Any,
    metrics_port: int | None,
    json_out: bool,
    verbose: bool,
) -> None:
    from timeline.consumers.backoff import GaveUp
    from timeline.consumers.readmodels.evaluation import utcnow

    quiet_kafka(verbose)
    fixed = instant(now, pol.time_zone)
    consumer = READ_MODELS[name].consumer(
        url,
        bootstrap,
        topic,
        group=group,
        policy=pol,
        clock=(lambda: fixed) if fixed else utcnow,
        tick_interval=tick_interval,
        max_batch=max_batch,
        give_up_after=give_up_after if once else None,
        store_url=store_url,
    )

    if metrics_port is not None:
        serve_metrics(metrics_port)

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("timeline.consumers.readmodels").info("signal %d: finishing the batch in flight", signum)
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
    summary = {"consumer": name, "group": consumer.group, "topic": topic, **stats.to_json()}
    if json_out:
        emit(summary)
    else:
        err.print(
            f"{name} consumer {consumer.group}: applied {plural(stats.applied, 'event')} "
            f"({plural(stats.duplicates, 'repeat')}, {plural(stats.dead_letters, 'dead letter')}) "
            f"in {stats.elapsed:.1f}s",
            highlight=False,
            soft_wrap=True,
        )
