"""Reading the instants users type: ``--as-of`` and ``--known-at``."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from timeline.errors import TimelineError


def parse_instant(text: str | None, time_zone: str, default: dt.datetime) -> dt.datetime:
    """An ISO 8601 instant with an offset, or a date meaning the end of that day.

    "What was her tier on 31 March" asks about the day as a whole, so a bare
    date is read as the last instant of that day in the policy's time zone
    (every event of that day counts). A timestamp without an offset is
    refused, as it is for events.
    """
    if text is None:
        return default
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ZoneInfo(time_zone))
            return (next_midnight - dt.timedelta(microseconds=1)).astimezone(dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TimelineError(f"not a date or an ISO 8601 instant: {text!r}") from None
    if moment.tzinfo is None:
        raise TimelineError(f"instant {text!r} needs an offset, e.g. {text}+08:00 or {text}Z")
    return moment.astimezone(dt.UTC)
