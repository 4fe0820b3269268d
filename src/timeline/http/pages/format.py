"""How figures read on a page: amounts with separators and two decimals, instants in the policy's zone with offset."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo


def money(value: Decimal | str | int | None) -> str:
    """``1234567.5`` → ``1,234,567.50``."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value):,.2f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def instant(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    """An instant in the policy's zone with its offset, to the second: ``2025-03-01T09:30:00+08:00``.

    (The report tables' cells come formatted from the application layer, ``report_table.instant``.)
    """
    return "—" if moment is None else moment.astimezone(zone).replace(microsecond=0).isoformat()


def offset(moment: dt.datetime, zone: ZoneInfo) -> str:
    """The zone's offset at ``moment``, as pickers' labels name it: ``+08:00``."""
    return moment.astimezone(zone).isoformat()[-6:]


def picker(moment: dt.datetime, zone: ZoneInfo) -> str:
    """The instant as a ``datetime-local`` picker holds it: the policy's wall time to the second, no offset."""
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def picked(text: str | None, zone: ZoneInfo) -> str | None:
    """What a picker sent, as ``--as-of`` reads it: a wall time without offset is the policy zone's.

    ``2025-06-30T23:59`` → ``2025-06-30T23:59:00+08:00``; a date (the day's end), an instant with an
    offset (a link's) or an unreadable text is left for :func:`timeline.domain.instants.parse_instant`.
    """
    text = (text or "").strip()
    if not _WALL_TIME.fullmatch(text):
        return text or None
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=zone).isoformat()
    except ValueError:  # 2025-02-30T…: parse_instant names it
        return text


def policy_href(link: str) -> str:
    """``docs/POLICY.md#tier-upgrade`` (what explanations link to) → the served document's address."""
    _, _, anchor = link.partition("#")
    return f"/policy#{anchor}" if anchor else "/policy"


def numeric(cell: str) -> bool:
    """Whether a table cell is a figure (right-aligned): ``1,234.50``, ``12``, ``12.5%``."""
    return bool(_NUMERIC.fullmatch(cell))


_NUMERIC = re.compile(r"[-+]?\d[\d,]*(\.\d+)?%?")
_WALL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,6})?)?")
