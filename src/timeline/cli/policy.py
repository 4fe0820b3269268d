"""``timeline policy publish|list``: the policy versions of a store, in force by business date (issue 13)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from timeline.cli.options import Db, Json, KnownAt, open_engine
from timeline.cli.output import counted, emit, err, local, out
from timeline.cli.plain_help import PlainGroup
from timeline.domain.errors import ConcurrencyConflict, TimelineError

if TYPE_CHECKING:
    from timeline.application.states import StateReader
    from timeline.domain.policy_versions import PolicyTimeline
    from timeline.projections.state import CustomerState

policy_app = typer.Typer(
    cls=PlainGroup, help="Policy versions: publish one, list those in force.", no_args_is_help=True
)


@policy_app.command("publish")
def publish(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="The policy file (.json), its id inside.")],
    effective_from: Annotated[
        str,
        typer.Option(
            "--effective-from",
            metavar="WHEN",
            help="Business time it is in force from: ISO instant, or a date (its start in the policy's zone).",
        ),
    ],
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Record a policy version in the store's policy stream; say how many customers' current answers change."""
    from timeline.application.policy_store import PolicyStream
    from timeline.application.states import StateReader
    from timeline.domain.policy import load_policy

    if Path(path).suffix != ".json" or not Path(path).is_file():
        raise TimelineError(f"no policy file {path}: give a .json file")
    candidate = load_policy(path)
    engine = open_engine(ctx, db, keys=False, create=False)
    try:
        start = _effective(effective_from, engine.policy.time_zone)
        stream = PolicyStream(engine.store, engine.policy)
        stream.check(candidate, start)
        now = dt.datetime.now(dt.UTC)
        read = len(stream.entries())  # what the count of changed customers rests on
        before = stream.known()
        after = before.with_published(candidate, start, now)
        changed = _changed(StateReader(engine.store, engine.policy, versions=before), after, now)
        try:
            entry = stream.publish(candidate, start, now, after=read)
        except ConcurrencyConflict as exc:  # the input was fine: the publish lost a race (exit 1, not 2)
            err.print(f"timeline: error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
    finally:
        engine.close()
    zone = engine.policy.zone
    if json_out:
        emit({**entry.to_json(), "customers_changed": changed})
        return
    out.print(
        f"published {entry.version.id} in force from {local(start, zone)} (recorded {local(now, zone)}): "
        f"the current tier, stage or points of {counted(changed, 'customer')} change",
        soft_wrap=True,
    )


def _effective(text: str, zone: str) -> dt.datetime:
    """An instant; a date is the start of that day in the policy's zone (a version is in force from a day on)."""
    from zoneinfo import ZoneInfo

    from timeline.domain.instants import in_utc, parse_instant

    if len(text.strip()) == 10:
        try:
            return in_utc(dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time(), ZoneInfo(zone)))
        except ValueError:
            pass  # parse_instant names the mistake
    return parse_instant(text, zone, dt.datetime.now(dt.UTC))


def _known(text: str, zone: str) -> dt.datetime:
    from timeline.domain.instants import parse_instant

    return parse_instant(text, zone, dt.datetime.now(dt.UTC))


def _changed(reader: StateReader, after: PolicyTimeline, now: dt.datetime) -> int:
    """How many customers' tier, stage or points as of now differ between the versions before and after."""
    current = {s.customer_id: _answer(s) for s in reader.all_states(now, now)}
    reader.versions = after
    return sum(1 for s in reader.all_states(now, now) if current.get(s.customer_id) != _answer(s))


def _answer(state: CustomerState) -> tuple[object, ...]:
    return state.tier.tier, state.lifecycle.stage, state.points.available


@policy_app.command("list")
def list_versions(
    ctx: typer.Context,
    known_at: KnownAt = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """The versions in force over business time, as known at a system time (one line each)."""
    from timeline.application.policy_store import PolicyStream
    from timeline.domain.policy_versions import BEGINNING

    engine = open_engine(ctx, db, keys=False, create=False)
    try:
        k = _known(known_at, engine.policy.time_zone) if known_at else dt.datetime.now(dt.UTC)
        versions = PolicyStream(engine.store, engine.policy).timeline().known_at(k).in_force()
    finally:
        engine.close()
    zone = engine.policy.zone
    for version in versions:
        start = None if version.effective_from == BEGINNING else version.effective_from
        recorded = None if version.recorded_at == BEGINNING else version.recorded_at
        if json_out:
            emit(
                {
                    "id": version.id,
                    "effective_from": _iso(start),
                    "recorded_at": _iso(recorded),
                }
            )
        else:
            since = local(start, zone) if start else "the beginning"
            when = f"recorded {local(recorded, zone)}" if recorded else "shipped"
            out.print(f"{version.id}  in force from {since}  ({when})", soft_wrap=True)


def _iso(moment: dt.datetime | None) -> str | None:
    from timeline.domain.recorded import iso

    return iso(moment) if moment else None
