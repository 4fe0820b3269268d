"""Pages of a newest-first list by month: whole months while they fit, a month too long for one page in parts.

A cursor names where a page starts: ``2025-11`` (the newest item of November 2025 or, if that month has
none, of the first older month that has), or ``2025-11.250`` (the 251st item of November, newest first: a
month of more items than a page continues on the next). A cursor stays valid while new events arrive in
other months, and following "older" from the first page reaches every item.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from timeline.domain.errors import TimelineError

PAGE_SIZE = 250
"""The most items on one page."""

_CURSOR = re.compile(r"(?P<month>\d{4}-\d\d)(\.(?P<skip>\d{1,9}))?")


@dataclass(frozen=True, slots=True)
class Paged:
    start: int
    """Index of the page's first item in the whole list (newest first)."""
    stop: int
    newer: str | None
    """The cursor of the page before (newer items), None on the first page."""
    older: str | None
    """The cursor of the next page, None on the last."""


def page_of(months: Sequence[str], cursor: str | None, name: str, size: int = PAGE_SIZE) -> Paged:
    """The page at ``cursor`` of a list whose items fall in ``months`` (``YYYY-MM``, non-increasing).

    ``name`` is the query parameter, named in the error for an unreadable cursor.
    """
    firsts: dict[str, int] = {}
    for index, month in enumerate(months):
        firsts.setdefault(month, index)
    start = _start(months, firsts, cursor, name)
    stop = min(start + size, len(months))
    if stop < len(months) and months[stop - 1] == months[stop] and months[start] != months[stop]:
        stop = firsts[months[stop]]  # end the page where its last month begins
    newer = _newer(months, firsts, start, size) if start else None
    return Paged(start, stop, newer, _cursor(months, firsts, stop))


def _start(months: Sequence[str], firsts: dict[str, int], cursor: str | None, name: str) -> int:
    if cursor is None:
        return 0
    found = _CURSOR.fullmatch(cursor.strip())
    if not found:
        raise TimelineError(f"{name}: not a month cursor (YYYY-MM or YYYY-MM.N): {cursor!r}")
    month, skip = found["month"], int(found["skip"] or 0)
    if month in firsts:
        return min(firsts[month] + skip, len(months))
    return next((i for i, m in enumerate(months) if m < month), len(months))


def _cursor(months: Sequence[str], firsts: dict[str, int], index: int) -> str | None:
    if index >= len(months):
        return None
    month = months[index]
    skip = index - firsts[month]
    return f"{month}.{skip}" if skip else month


def _newer(months: Sequence[str], firsts: dict[str, int], start: int, size: int) -> str | None:
    """The cursor of a page ending just before ``start``: whole months back from there while they fit."""
    begin = firsts[months[start - 1]]
    if start - begin > size:
        begin = start - size
    else:
        while begin and start - firsts[months[begin - 1]] <= size:
            begin = firsts[months[begin - 1]]
    return _cursor(months, firsts, begin)
