"""What the read-model commands share: their options, and turning them into URLs, a policy and instants."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Collection
from typing import Annotated, Any

import typer
from rich.console import Console

from timeline.domain.errors import TimelineError

err = Console(stderr=True)
out = Console(highlight=False)

ReadDb = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=["TIMELINE_READ_DB", "TIMELINE_DB"],
        help="Read-model database, postgresql://… (default TIMELINE_READ_DB, else the store's database).",
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


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def read_db(db: str | None, store: str | None) -> str:
    """The read model's database: ``--db``, else the store's own (a PostgreSQL store holds its read models)."""
    url = db or store
    if not url:
        raise TimelineError("no read-model database: give --db postgresql://… (or --store, or set TIMELINE_READ_DB)")
    return url


def load(policy: str | None) -> Any:
    from timeline.domain.policy import load_policy

    return load_policy(policy) if policy else load_policy()


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
