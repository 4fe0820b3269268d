"""Tables of display-ready cells, the one form the CLI, the pages and the CSV downloads share.

Cells are text as people read it: amounts with thousands separators and two
decimals, instants in the policy's time zone with their offset, tier and
stage ids as the CLI prints them. Every interface prints these cells as they
are, so a figure on a page is the figure the CLI gives.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

KEY_PERSON_MARK = "key person"
"""What the ``key person`` column of a customer list says for a key person (关键人); empty otherwise."""


@dataclass(frozen=True)
class ReportTable:
    name: str
    """A slug, e.g. ``tier-mix``: the CSV download's file name and the JSON key."""
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    customer_column: int | None = None
    """The index of the column holding a customer id (pages link it), if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
        }


def table(
    name: str, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], customer_column: int | None = None
) -> ReportTable:
    return ReportTable(name, title, tuple(columns), tuple(tuple(r) for r in rows), customer_column)


def report_csv(report: ReportTable) -> str:
    """The table as RFC 4180 CSV: a header line, CRLF line ends, fields quoted where needed."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(report.columns)
    writer.writerows(report.rows)
    return buffer.getvalue()


def money(amount: Decimal) -> str:
    """``1,234,567.00``."""
    return f"{amount:,.2f}"


def count(n: int) -> str:
    return f"{n:,}"


def share(part: int, whole: int) -> str:
    """``12.5%`` of ``whole`` (``0.0%`` of nothing)."""
    return f"{part / whole:.1%}" if whole else "0.0%"


def instant(moment: dt.datetime, zone: ZoneInfo) -> str:
    """An instant in the policy's time zone with its offset, as ``--as-of`` accepts it back."""
    return moment.astimezone(zone).isoformat()


def heading_instant(moment: dt.datetime, zone: ZoneInfo) -> str:
    """An instant in a table's title, to the second (a window ending "now" has microseconds nobody reads)."""
    return instant(moment.replace(microsecond=0), zone)


def key_person(flag: bool) -> str:
    return KEY_PERSON_MARK if flag else ""


def months_before(moment: dt.datetime, months: int, zone: ZoneInfo) -> dt.datetime:
    """The same wall-clock time ``months`` calendar months earlier in ``zone`` (a missing day: the month's last)."""
    local = moment.astimezone(zone)
    year, month = divmod(local.year * 12 + local.month - 1 - months, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day).astimezone(dt.UTC)
