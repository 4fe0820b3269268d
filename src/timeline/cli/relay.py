"""``timeline relay``: publish the event store to Kafka (see :mod:`timeline.consumers.relay.relay`)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Annotated

import typer

from timeline.cli.consumer_options import Bootstrap, MetricsPort, Topic, Verbose, kafka, serve_metrics
from timeline.cli.logjson import LogJson, log_json
from timeline.cli.options import Db, settings
from timeline.store import open_store

GIVE_UP_AFTER = 30.0
"""Default seconds a bounded run (``--once``) keeps retrying before it gives up."""


def relay_command(
    ctx: typer.Context,
    db: Db = None,
    bootstrap: Bootstrap = None,
    topic: Topic = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, metavar="N", help="Events per batch; the position is saved after each.")
    ] = 5000,
    once: Annotated[bool, typer.Option("--once", help="Stop when caught up instead of tailing the log.")] = False,
    name: Annotated[
        str, typer.Option("--name", metavar="NAME", help="Relay name: each name keeps its own position.")
    ] = "default",
    partitions: Annotated[int, typer.Option(min=1, metavar="N", help="Partitions if the topic has to be created.")] = 3,
    replication_factor: Annotated[
        int, typer.Option(min=1, metavar="N", help="Replication if the topic has to be created.")
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.5, metavar="SECONDS", help="Seconds to wait for the broker before backing off."
        ),
    ] = 30.0,
    give_up_after: Annotated[
        float,
        typer.Option(
            "--give-up-after",
            min=1.0,
            metavar="SECONDS",
            help="With --once: exit 1 after this many seconds of failing to reach the broker or the database.",
        ),
    ] = GIVE_UP_AFTER,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, metavar="SECONDS", help="Seconds between polls when caught up.")
    ] = 1.0,
    metrics_port: MetricsPort = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
    verbose: Verbose = False,
    json_logs: LogJson = False,
) -> None:
    """Publish every stored event, in global order, as CloudEvents to Kafka (at least once)."""
    from timeline.consumers.backoff import GaveUp
    from timeline.consumers.relay.relay import Relay

    logging.getLogger("timeline.consumers.relay").setLevel(logging.INFO)
    # The relay logs each failure once with what it does next; the client logs every reconnect attempt.
    logging.getLogger("kafka").setLevel(logging.WARNING if verbose else logging.CRITICAL)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log_json(json_logs or settings(ctx).log_json)
    timeout_ms = int(timeout * 1000)
    bootstrap, topic = kafka(ctx, bootstrap, topic)
    store = open_store(settings(ctx).store_url(db), create=False)
    relay = Relay(
        store,
        bootstrap,
        topic,
        name=name,
        batch_size=batch_size,
        partitions=partitions,
        replication_factor=replication_factor,
        poll_interval=poll_interval,
        give_up_after=give_up_after if once else None,
        producer_config={
            "request_timeout_ms": timeout_ms,
            "delivery_timeout_ms": 2 * timeout_ms,
            "max_block_ms": timeout_ms,
            "bootstrap_timeout_ms": timeout_ms,
        },
    )

    if metrics_port is not None:
        serve_metrics(metrics_port)

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("timeline.consumers.relay").info("signal %d: finishing the batch in flight", signum)
        relay.stop()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = relay.run(stop_when_caught_up=once)
    except GaveUp as exc:
        sys.stderr.write(f"timeline: error: {exc}\n")
        raise typer.Exit(1) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        relay.close()
        store.close()
    summary = {"topic": topic, "name": name, **stats.to_json()}
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        sys.stderr.write(
            f"relay {name}: published {stats.published} events to {topic} in {stats.elapsed:.1f}s, "
            f"position {stats.start_position} -> {stats.position}\n"
        )
