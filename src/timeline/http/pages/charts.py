"""Server-rendered SVG charts: AUM with the tier thresholds and the tier held, points with vesting and expiry.

Coordinates only: the chart's figures come from the projections (the AUM
line, the tier changes, the points ledger) the state is folded from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from timeline.domain.policy import Policy
from timeline.projections.balances import StepLine
from timeline.projections.ledger import LedgerLine
from timeline.projections.tier import TierChange

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 12, 28
BAND_COLOURS = ("#eef3f8", "#e6f2e6", "#fbf0dc", "#f3e6f5", "#fde8e8")


@dataclass(frozen=True, slots=True)
class Mark:
    x: int
    y: float
    kind: str
    title: str


@dataclass(frozen=True, slots=True)
class Band:
    x: float
    width: float
    colour: str
    tier: str


@dataclass(frozen=True, slots=True)
class Rule:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """What a template draws: a step path, horizontal rules, bands, marks and the axis labels."""

    path: str
    rules: tuple[Rule, ...]
    bands: tuple[Band, ...]
    marks: tuple[Mark, ...]
    x_labels: tuple[tuple[float, str], ...]
    y_labels: tuple[tuple[float, str], ...]
    width: int = WIDTH
    height: int = HEIGHT


class _Scale:
    def __init__(self, start: dt.datetime, end: dt.datetime, top: float) -> None:
        self.start, self.span = start, max((end - start).total_seconds(), 1.0)
        self.origin = start.timestamp()
        self.per_second = (WIDTH - LEFT - RIGHT) / self.span
        self.top = top if top > 0 else 1.0

    def x(self, moment: dt.datetime) -> float:
        share = (moment - self.start).total_seconds() / self.span
        return round(LEFT + min(max(share, 0.0), 1.0) * (WIDTH - LEFT - RIGHT), 1)

    def y(self, value: float) -> float:
        return round(HEIGHT - BOTTOM - min(max(value / self.top, 0.0), 1.0) * (HEIGHT - TOP - BOTTOM), 1)

    def column(self, moment: dt.datetime) -> int:
        """The pixel column of an instant (clamped to the axis)."""
        x = LEFT + (moment.timestamp() - self.origin) * self.per_second
        return int(min(max(x, LEFT), WIDTH - RIGHT) + 0.5)


def _step_path(scale: _Scale, points: list[tuple[dt.datetime, float]], end: dt.datetime) -> str:
    """The step line, one pixel column at a time: its lowest, highest and last value in each.

    Ten thousand movements on a 630-pixel axis draw the same with a few values per column.
    """
    if not points:
        return ""
    parts = [f"M{scale.column(points[0][0])},{scale.y(0)}"]
    column = -1
    low = high = last = 0.0
    for moment, value in points:
        x = scale.column(moment)
        if x != column:
            if column >= 0:
                parts.append(_column(scale, column, low, high, last))
            column, low, high = x, value, value
        elif value < low:
            low = value
        elif value > high:
            high = value
        last = value
    parts.append(_column(scale, column, low, high, last))
    parts.append(f"H{scale.x(end)}")
    return "".join(parts)


def _column(scale: _Scale, x: int, low: float, high: float, last: float) -> str:
    if low == high:
        return f"H{x}V{scale.y(last)}"
    return f"H{x}V{scale.y(low)}V{scale.y(high)}V{scale.y(last)}"


def _x_labels(scale: _Scale, start: dt.datetime, end: dt.datetime, zone: dt.tzinfo) -> tuple[tuple[float, str], ...]:
    count = 4
    moments = [start + (end - start) * i / count for i in range(count + 1)]
    return tuple((scale.x(m), m.astimezone(zone).strftime("%Y-%m")) for m in moments)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:,.0f}k"
    return f"{value:,.0f}"


def aum_chart(
    aum: StepLine,
    changes: tuple[TierChange, ...],
    first_tier: str,
    policy: Policy,
    start: dt.datetime,
    end: dt.datetime,
) -> Chart:
    """AUM over [start, end]: its line, each tier threshold in sight, and a band per tier held."""
    points = [(t, float(v)) for t, v in zip(aum.instants, aum.values, strict=True) if t <= end]
    highest = max((v for _, v in points), default=0.0)
    thresholds = [(level.name, float(level.threshold)) for level in policy.tier.tiers if level.threshold > 0]
    above = [t for _, t in thresholds if t > highest]
    top = max(highest * 1.15, min(above) * 1.05 if above and min(above) <= max(highest, 1.0) * 3 else 0.0, 1.0)
    scale = _Scale(start, end, top)
    rules = tuple(Rule(scale.y(t), f"{name} {_short(t)}") for name, t in thresholds if t <= top)
    ranks = {level.name: i for i, level in enumerate(policy.tier.tiers)}
    held = [(start, first_tier)] + [(c.at, c.to_tier) for c in changes if c.at <= end]
    bands = []
    for i, (since, tier) in enumerate(held):
        until = held[i + 1][0] if i + 1 < len(held) else end
        x0, x1 = scale.x(max(since, start)), scale.x(until)
        if x1 > x0:
            colour = BAND_COLOURS[ranks.get(tier, 0) % len(BAND_COLOURS)]
            bands.append(Band(x0, round(x1 - x0, 1), colour, tier))
    y_labels = tuple((scale.y(v), _short(v)) for v in (0.0, top / 2, top))
    return Chart(
        _step_path(scale, points, end), rules, tuple(bands), (), _x_labels(scale, start, end, policy.zone), y_labels
    )


def _mark_title(kind: str, lines: list[LedgerLine]) -> str:
    if len(lines) == 1:
        return f"{kind} {lines[0].points:+,} {lines[0].note}".strip()
    return f"{len(lines)} × {kind}, {sum(line.points for line in lines):+,} points"


def points_chart(ledger: tuple[LedgerLine, ...], policy: Policy, start: dt.datetime, end: dt.datetime) -> Chart:
    """The points balance after each ledger line, vestings and expiries marked."""
    running, points = 0, []
    for line in ledger:
        running += line.points
        points.append((line.at, float(running), line))
    top = max((max(p for _, p, _ in points) * 1.15 if points else 0.0), 10.0)
    scale = _Scale(start, end, top)
    marked: dict[tuple[int, str], list[tuple[float, LedgerLine]]] = {}
    for at, value, line in points:
        if line.kind in ("vest", "expire"):
            marked.setdefault((scale.column(at), line.kind), []).append((value, line))
    marks = [
        Mark(x, scale.y(lines[-1][0]), kind, _mark_title(kind, [line for _, line in lines]))
        for (x, kind), lines in marked.items()
    ]
    path = _step_path(scale, [(at, value) for at, value, _ in points], end)
    y_labels = tuple((scale.y(v), _short(v)) for v in (0.0, top / 2, top))
    return Chart(path, (), (), tuple(marks), _x_labels(scale, start, end, policy.zone), y_labels)
