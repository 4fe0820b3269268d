"""``timeline whatif``: what a candidate policy would change, customer by customer, before anyone adopts it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from timeline.cli.options import AsOf, Db, Json, KnownAt, open_engine, times
from timeline.cli.output import counted, emit, local, local_as_of, log_progress, out
from timeline.domain.errors import TimelineError

if TYPE_CHECKING:
    from rich.console import Group

    from timeline.application.whatif import Report


def whatif(
    ctx: typer.Context,
    policy: Annotated[
        Path, typer.Option("--policy", metavar="FILE", help="The candidate policy (JSON, schemas/policy.schema.json).")
    ],
    effective_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="WHEN",
            help="Business time the candidate is in force from (a date: its start). Default: the beginning.",
        ),
    ] = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    branch: Annotated[str | None, typer.Option("--branch", metavar="BRANCH", help="Only this branch's.")] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Fold every customer under the current policy and under a candidate; report the difference (writes nothing)."""
    from timeline.application.whatif import Question, what_if
    from timeline.application.whatif import effective_from as _effective_from
    from timeline.domain.policy import policy_from_text

    try:
        text = policy.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TimelineError(f"cannot read the candidate policy {str(policy)!r}: {exc}") from None
    candidate = policy_from_text(text, str(policy))
    engine = open_engine(ctx, db, keys=False, create=False)
    try:
        zone = engine.policy.time_zone
        q, k = times(zone, as_of, known_at)
        start = None if effective_from is None else _effective_from(effective_from, zone)
        question = Question(candidate, q, k, start, branch)
        with log_progress("reading the log") as advance:
            report = what_if(engine.store, engine.policy, question, progress=advance)
    finally:
        engine.close()
    if json_out:
        for comparison in report.differing:
            emit(comparison.to_json())
        emit({"summary": report.summary_json()})
        return
    out.print(render_whatif(report))


def render_whatif(report: Report) -> Group:
    """The summary tables a product manager reads: tiers, moves, lifecycle, at-risk, points owed."""
    from rich.console import Group
    from rich.text import Text

    from timeline.cli.report import listing

    q, s = report.question, report.summary_json()
    zone = report.current.zone
    since = local(q.effective_from, zone) if q.effective_from else "the beginning"
    head = [
        Text(
            f"what-if: candidate {q.candidate.id} in force from {since}, against the current versions "
            f"({report.current.id} in force as of then)",
            style="bold",
        ),
        Text(
            f"as of {local_as_of(q.as_of, zone)}, as known at {local(q.known_at, zone)}"
            + (f", branch {q.branch}" if q.branch else "")
        ),
        Text(f"{counted(s['customers'], 'customer')} compared, {s['differing']:,} differ (nothing was written)"),
    ]
    tiers = listing(
        "Customers per tier",
        ["tier", "current", "candidate", "change"],
        _side_by_side(s["tiers"]["current"], s["tiers"]["candidate"]),
    )
    moves = listing(
        "Tier moves",
        ["from", "to", "customers"],
        [(m["from"], m["to"], f"{m['customers']:,}") for m in s["tier_moves"]] or [("—", "—", "0")],
    )
    stages = listing(
        "Lifecycle stages",
        ["stage", "current", "candidate", "change"],
        _side_by_side(s["lifecycle"]["current"], s["lifecycle"]["candidate"]),
    )
    points = s["points_outstanding"]
    risk_and_points = listing(
        "At risk and points owed",
        ["", "value"],
        [
            ("entering at-risk", f"{s['entering_at_risk']:,}"),
            ("leaving at-risk", f"{s['leaving_at_risk']:,}"),
            ("points outstanding, current", f"{points['current']:,}"),
            ("points outstanding, candidate", f"{points['candidate']:,}"),
            ("change in points owed", _change(points["candidate"] - points["current"])),
        ],
    )
    hint = Text("--json lists each customer who differs, with the rule behind each answer", style="dim")
    return Group(*head, tiers, moves, stages, risk_and_points, hint)


def _side_by_side(current: dict[str, int], candidate: dict[str, int]) -> list[tuple[str, str, str, str]]:
    names = [*current, *(n for n in candidate if n not in current)]
    rows = []
    for name in names:
        a, b = current.get(name), candidate.get(name)
        rows.append(
            (
                name,
                "—" if a is None else f"{a:,}",
                "—" if b is None else f"{b:,}",
                _change((b or 0) - (a or 0)),
            )
        )
    return rows


def _change(delta: int) -> str:
    return f"{delta:+,}" if delta else "0"


def register(app: typer.Typer, panel: str) -> None:
    """Add ``whatif`` to ``app`` under the help panel ``panel``."""
    app.command(rich_help_panel=panel)(whatif)
