"""The timeline of a customer's events: by month, newest first, one line per event, voided ones beside their fix."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from timeline.domain.recorded import ENCRYPTED, ERASED, RecordedEvent
from timeline.domain.types import EventType
from timeline.http.pages import format as fmt

ICONS: dict[str, str] = {
    EventType.CUSTOMER_REGISTERED: "★",
    EventType.CUSTOMER_PROFILE_UPDATED: "✎",
    EventType.DEPOSIT_MADE: "↓",
    EventType.WITHDRAWAL_MADE: "↑",
    EventType.VISIT_RECORDED: "☏",
    EventType.GREETING_SENT: "✉",
    EventType.COMPLAINT_FILED: "⚠",
    EventType.COMPLAINT_RESOLVED: "✓",
    EventType.REFERRAL_MADE: "➜",
    EventType.REFERRAL_QUALIFIED: "✔",
    EventType.SURVEY_COMPLETED: "☆",
    EventType.FOLLOWUP_SCHEDULED: "□",
    EventType.FOLLOWUP_COMPLETED: "☑",
    EventType.POINTS_REDEEMED: "◆",
    EventType.CORRECTION_RECORDED: "↺",
    EventType.CUSTOMER_ERASED: "⌫",
}


def pii(value: Any) -> str:
    """A PII field as a person reads it: its text, or that it is erased (or sealed from this reader)."""
    if value == ERASED:
        return "[erased]"
    if value == ENCRYPTED:
        return "[sealed]"
    return "—" if value is None else str(value)


def _profile(field: str, value: Any) -> str:
    if field == "key_person":
        return "key person (关键人)" if value else "no longer a key person"
    return f"{field.replace('_', ' ')} {pii(value) if field == 'phone' else value}"


def _money(d: dict[str, Any]) -> str:
    return fmt.money(d.get("amount"))


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    EventType.CUSTOMER_REGISTERED: lambda d: (
        f"registered: {pii(d.get('name'))}, branch {d.get('branch_id')}, RM {d.get('relationship_manager')}"
    ),
    EventType.CUSTOMER_PROFILE_UPDATED: lambda d: "profile: " + ", ".join(_profile(k, v) for k, v in sorted(d.items())),
    EventType.DEPOSIT_MADE: lambda d: (
        f"deposit {_money(d)} to {d.get('account_id')} ({d.get('product')}"
        + (f", {d['term_months']} months)" if d.get("term_months") else ")")
    ),
    EventType.WITHDRAWAL_MADE: lambda d: f"withdrawal {_money(d)} from {d.get('account_id')}",
    EventType.VISIT_RECORDED: lambda d: f"visit by {d.get('channel')}: {d.get('purpose')}",
    EventType.GREETING_SENT: lambda d: (
        f"{d.get('occasion')} greeting by {d.get('channel')}" + (f", gift {d['gift']}" if d.get("gift") else "")
    ),
    EventType.COMPLAINT_FILED: lambda d: (
        f"complaint {d.get('complaint_id')} ({d.get('category')}, {d.get('severity')}): {d.get('description')}"
    ),
    EventType.COMPLAINT_RESOLVED: lambda d: (
        f"complaint {d.get('complaint_id')} resolved: {d.get('resolution')} ("
        + ("satisfied" if d.get("satisfied") else "not satisfied")
        + ")"
    ),
    EventType.REFERRAL_MADE: lambda d: f"referred {d.get('referred_customer_id')}",
    EventType.REFERRAL_QUALIFIED: lambda d: f"referral of {d.get('referred_customer_id')} qualified",
    EventType.SURVEY_COMPLETED: lambda d: f"survey score {d.get('score')} of 5",
    EventType.FOLLOWUP_SCHEDULED: lambda d: (
        f"follow-up {d.get('followup_id')} due {d.get('due_date')}: {d.get('reason')}"
    ),
    EventType.FOLLOWUP_COMPLETED: lambda d: f"follow-up {d.get('followup_id')} done: {d.get('outcome')}",
    EventType.POINTS_REDEEMED: lambda d: f"redeemed {fmt.count(d.get('points'))} points for {d.get('reward')}",
    EventType.CORRECTION_RECORDED: lambda d: f"correction: {d.get('reason')}",
    EventType.CUSTOMER_ERASED: lambda d: f"erased: {d.get('reason')}",
}


@dataclass(frozen=True, slots=True)
class Line:
    event_id: UUID
    type: str
    icon: str
    summary: str
    occurred: str
    recorded: str
    voided: bool
    corrects: tuple[Line, ...]
    """For a correction: the event it voids, shown struck through beside it."""


@dataclass(frozen=True, slots=True)
class Month:
    label: str
    lines: tuple[Line, ...]


def _line(event: RecordedEvent, zone: ZoneInfo, voided: bool, corrects: tuple[Line, ...] = ()) -> Line:
    summary = SUMMARIES.get(event.type, lambda d: event.type)(event.data)
    return Line(
        event.event_id,
        event.type,
        ICONS.get(event.type, "•"),
        summary,
        fmt.instant(event.occurred_at, zone),
        fmt.instant(event.recorded_at, zone),
        voided,
        corrects,
    )


def listed(events: Iterable[RecordedEvent], as_of: dt.datetime, known_at: dt.datetime) -> list[RecordedEvent]:
    """The events a timeline lists, newest first: known at ``known_at``, occurred by ``as_of``; a voided one
    is not listed but shown beside its correction."""
    known = [e for e in events if e.recorded_at <= known_at and e.occurred_at <= as_of]
    voided = {voided_by(e) for e in known if e.type == EventType.CORRECTION_RECORDED}
    shown = [e for e in known if e.event_id not in voided or e.type == EventType.CORRECTION_RECORDED]
    shown.sort(key=_business, reverse=True)
    return shown


_business = attrgetter("occurred_at", "position")


def voided_by(correction: RecordedEvent) -> UUID | None:
    """The event a correction voids (None for a text that names none)."""
    return _uuid(correction.data.get("voids_event_id"))


def month_labels(moments: Iterable[dt.datetime], zone: ZoneInfo) -> list[str]:
    """``YYYY-MM`` in the policy's zone of each of ``moments`` (newest first): the timeline's months.

    Only a moment outside the last one's month is converted (a few dozen of ten thousand).
    """
    labels: list[str] = []
    label, start, end = "", dt.datetime.max.replace(tzinfo=dt.UTC), dt.datetime.min.replace(tzinfo=dt.UTC)
    for moment in moments:
        if not start <= moment < end:
            label, start, end = _month(moment, zone)
        labels.append(label)
    return labels


def _month(moment: dt.datetime, zone: ZoneInfo) -> tuple[str, dt.datetime, dt.datetime]:
    """The label of ``moment``'s month in ``zone`` and the month's bounds in UTC (as stored instants are: the
    comparisons then need no offsets)."""
    local = moment.astimezone(zone)
    first = dt.datetime(local.year, local.month, 1, tzinfo=zone)
    following = dt.datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    return f"{local.year:04d}-{local.month:02d}", first.astimezone(dt.UTC), following.astimezone(dt.UTC)


def months(page: Iterable[RecordedEvent], targets: dict[UUID, RecordedEvent], zone: ZoneInfo) -> tuple[Month, ...]:
    """A page of :func:`listed` events (newest first) by month; ``targets``: the events its corrections void."""
    grouped: dict[str, list[Line]] = {}
    for event in page:
        if event.type == EventType.CORRECTION_RECORDED:
            target = targets.get(voided_by(event))  # type: ignore[arg-type]
            line = _line(event, zone, False, (_line(target, zone, True),) if target else ())
        else:
            line = _line(event, zone, False)
        grouped.setdefault(_month(event.occurred_at, zone)[0], []).append(line)
    return tuple(Month(label, tuple(items)) for label, items in grouped.items())


def _uuid(text: Any) -> UUID | None:
    try:
        return UUID(str(text))
    except ValueError:
        return None
