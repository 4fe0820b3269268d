"""Reading the instants users type: ``--as-of`` and ``--known-at``."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from timeline.domain.errors import TimelineError

EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def parse_instant(text: str | None, time_zone: str, default: dt.datetime) -> dt.datetime:
    """An ISO 8601 instant with an offset, or a date meaning the end of that day.

    "What was her tier on 31 March" asks about the day as a whole, so a bare
    date is read as the last instant of that day in the policy's time zone
    (every event of that day counts). A timestamp without an offset is
    refused, as it is for events. Any readable instant is answered: one
    whose UTC form falls outside years 1..9999 (the first hours of year 1
    east of Greenwich, the last of 9999 west of it) is the first or last
    instant UTC can name, which no event precedes or follows.
    """
    if text is None:
        return default
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time.max.replace(fold=1), ZoneInfo(time_zone))
        else:
            moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TimelineError(f"not a date or an ISO 8601 instant: {text!r}") from None
    if moment.tzinfo is None:
        raise TimelineError(f"instant {text!r} needs an offset, e.g. {text}+08:00 or {text}Z")
    return in_utc(moment)


def in_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC, the nearest end of UTC's range if it lies beyond it."""
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        return EARLIEST if moment < EARLIEST else LATEST
