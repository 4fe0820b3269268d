"""The options several commands share, and the settings the ``timeline`` callback read once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from timeline.settings import Settings

if TYPE_CHECKING:
    from timeline.application.states import StateReader
    from timeline.domain.policy import Policy
    from timeline.engine import Engine

Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="The store: sqlite:///PATH or postgresql://… (default: TIMELINE_DB, else ./timeline.db).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="WHEN",
        help="Business time: ISO instant with offset, or a date (its end in the policy's zone). Default: now.",
    ),
]
KnownAt = Annotated[
    str | None,
    typer.Option("--known-at", metavar="WHEN", help="System time: count only events recorded by then. Default: now."),
]
PolicyOpt = Annotated[
    str | None,
    typer.Option("--policy", metavar="POLICY", help="Policy id or .json file (default TIMELINE_POLICY, else shipped)."),
]


def settings(ctx: typer.Context) -> Settings:
    """The settings the ``timeline`` callback read from the environment, once."""
    return ctx.ensure_object(Settings)


def times(time_zone: str, as_of: str | None, known_at: str | None) -> tuple[dt.datetime, dt.datetime]:
    """``--as-of`` and ``--known-at`` read in the policy's zone, both ``now`` when not given."""
    from timeline.domain.instants import parse_instant

    now = dt.datetime.now(dt.UTC)
    return parse_instant(as_of, time_zone, now), parse_instant(known_at, time_zone, now)


def open_engine(ctx: typer.Context, db: str | None, **kwargs: Any) -> Engine:
    """The engine on ``--db`` (else ``TIMELINE_DB``), its KEK and ``policy`` from the settings unless given."""
    from timeline.engine import open_engine as wire

    config = settings(ctx)
    policy = kwargs.pop("policy", None)
    return wire(config.store_url(db), kek=config.kek_source, policy=config.policy_name(policy), **kwargs)


@dataclass(frozen=True)
class Reading:
    """An engine opened to read states, and the instants asked; what a command prints after it closes."""

    engine: Engine
    reader: StateReader
    as_of: dt.datetime
    known_at: dt.datetime

    @property
    def policy(self) -> Policy:
        return self.engine.policy


@contextmanager
def reading(
    ctx: typer.Context,
    db: str | None,
    policy: str | None,
    as_of: str | None,
    known_at: str | None,
    *,
    keys: bool = False,
) -> Iterator[Reading]:
    """The existing store of ``--db`` under ``--policy``, ``--as-of`` and ``--known-at`` read in its zone; closed after.

    ``keys``: open the key ring too (only to read personal data).
    """
    from timeline.application.states import StateReader

    engine = open_engine(ctx, db, policy=policy, keys=keys, create=False)
    try:
        q, k = times(engine.policy.time_zone, as_of, known_at)
        yield Reading(engine, StateReader(engine.store, engine.policy), q, k)
    finally:
        engine.close()
