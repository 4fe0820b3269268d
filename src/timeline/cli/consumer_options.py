"""What the read-model commands share: their options, and turning them into URLs, a policy and instants."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from typing import Annotated, Any

import typer

from timeline.cli.options import settings
from timeline.domain.errors import TimelineError

ReadDb = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Read-model database, postgresql://… (default TIMELINE_READ_DB, else the store's database).",
    ),
]
StoreDb = Annotated[
    str | None,
    typer.Option(
        "--store", metavar="URL", help="The event store: sqlite:///PATH or postgresql://… (default TIMELINE_DB)."
    ),
]
Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers, host:port[,…] (default TIMELINE_KAFKA)."
    ),
]
Topic = Annotated[
    str | None,
    typer.Option("--topic", metavar="TOPIC", help="The topic the relay publishes to (default TIMELINE_TOPIC)."),
]
Now = Annotated[
    str | None,
    typer.Option(
        "--now",
        metavar="WHEN",
        help="Evaluate as of this instant (ISO 8601 with offset) instead of the clock: replays, tests.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Also log the Kafka client's own warnings.")]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        metavar="N",
        min=1,
        max=65535,
        help="Serve Prometheus metrics on this port at /metrics (default: none).",
    ),
]


def serve_metrics(port: int) -> None:
    """Start the ``/metrics`` endpoint; a port in use is the user's mistake, said in one line."""
    from timeline.consumers.metrics import serve

    try:
        serve(port)
    except OSError as exc:
        raise TimelineError(f"--metrics-port {port}: cannot listen there ({exc.strerror or exc})") from None


def read_db(ctx: typer.Context, db: str | None, store: str | None) -> str:
    """The read model's database: ``--db``, else ``TIMELINE_READ_DB``, else the store's own (``--store``, else
    ``TIMELINE_DB``): a PostgreSQL store holds its read models."""
    config = settings(ctx)
    return config.read_model_url(db) if store is None else db or config.read_db or store


def versions_store(ctx: typer.Context, db: str | None, store: str | None) -> str:
    """The store whose published policy versions a view folds under: ``--store``, else ``TIMELINE_DB``, else the
    read model's own database (a PostgreSQL store holds its read models)."""
    config = settings(ctx)
    return store or (config.db if "db" in config.model_fields_set else read_db(ctx, db, store))


def store_url(ctx: typer.Context, store: str | None) -> str:
    """``--store``, else ``TIMELINE_DB``, else the default store."""
    return settings(ctx).store_url(store)


def kafka(ctx: typer.Context, bootstrap: str | None, topic: str | None) -> tuple[str, str]:
    """``--bootstrap`` and ``--topic``, else ``TIMELINE_KAFKA`` and ``TIMELINE_TOPIC``, else their defaults."""
    config = settings(ctx)
    return bootstrap or config.kafka, topic or config.topic


def load(ctx: typer.Context, policy: str | None) -> Any:
    """The policy of ``--policy``, else ``TIMELINE_POLICY``, else the shipped one."""
    from timeline.domain.policy import load_policy

    return load_policy(settings(ctx).policy_name(policy))


def instant(text: str | None, time_zone: str, start_of_day: bool = False) -> dt.datetime | None:
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


def one_of(option: str, value: str | None, valid: Collection[str]) -> None:
    """A usage mistake (exit 2) unless ``value`` is None or one of ``valid``, which the message lists."""
    if value is not None and value not in valid:
        raise TimelineError(f"{option} is one of {', '.join(valid)}; not {value!r}")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def quiet_kafka(verbose: bool = False) -> None:
    """Our own INFO lines; the Kafka client's warnings only when asked (it logs every reconnect attempt)."""
    logging.getLogger("timeline.consumers").setLevel(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.WARNING if verbose else logging.CRITICAL)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
