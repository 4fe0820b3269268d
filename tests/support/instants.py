"""Instants as the tests write them: ISO text, business times in the policy's zone (Asia/Shanghai)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(text: str) -> dt.datetime:
    """The instant an ISO text names, in UTC; a text without an offset is refused (it names no instant)."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"test instants need an offset: {text}")
    return moment.astimezone(dt.UTC)


def at(start: str, days: int = 0, seconds: int = 0) -> str:
    """``start`` plus an exact duration, written in Asia/Shanghai time (a ``start`` without offset is read there)."""
    moment = dt.datetime.fromisoformat(start)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    return (moment + dt.timedelta(days=days, seconds=seconds)).astimezone(SHANGHAI).isoformat()
