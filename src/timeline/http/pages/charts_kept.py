"""The customer page's charts, drawn once per stream version, system time and minute of ``as of``.

The AUM line of every counted event (``projections.balances``) is folded once per stream version and
system time; a chart cuts it at its ``as of``. The charts are kept by the same key, the minute of ``as of``
and the length of the points ledger (so a vesting or an expiry draws anew): looking again within the
minute redraws nothing, and only the axis' end may lag by under a minute. A stream that grew is another
key, so nothing drawn is stale. Kept for the last few customers asked.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence

from timeline.domain.policy import Policy
from timeline.domain.recorded import RecordedEvent
from timeline.http.pages import charts
from timeline.http.pages.charts import Chart
from timeline.projections.balances import StepLine, balances
from timeline.projections.counted import counted
from timeline.projections.state import CustomerState

KEPT = 64

_lines: OrderedDict[tuple[str, int, dt.datetime | None], StepLine] = OrderedDict()
_charts: OrderedDict[tuple[object, ...], tuple[Chart, Chart]] = OrderedDict()
_lock = threading.Lock()


def page_charts(state: CustomerState, history: Sequence[RecordedEvent], policy: Policy) -> tuple[Chart, Chart]:
    """The AUM chart and the points chart of the state, from registration to its ``as of``."""
    latest = max((e.recorded_at for e in history), default=state.known_at)
    known = None if state.known_at >= latest else state.known_at
    minute = state.as_of.replace(second=0, microsecond=0)
    key = (state.customer_id, len(history), known, minute, len(state.points.ledger), policy.id)
    with _lock:
        drawn = _charts.get(key)
        if drawn is not None:
            _charts.move_to_end(key)
            return drawn
    start = state.registered_at
    end = max(state.as_of, start + dt.timedelta(days=1))
    aum = aum_line(state.customer_id, history, state.known_at, latest)
    first = state.tier.changes[0].from_tier if state.tier.changes else state.tier.tier
    drawn = (
        charts.aum_chart(aum, state.tier.changes, first, policy, start, end),
        charts.points_chart(state.points.ledger, policy, start, end),
    )
    _keep(_charts, key, drawn)
    return drawn


def aum_line(
    customer_id: str, history: Sequence[RecordedEvent], known_at: dt.datetime, latest: dt.datetime
) -> StepLine:
    """AUM over business time from the events of ``history`` recorded by ``known_at`` (``latest``: the last)."""
    key = (customer_id, len(history), None if known_at >= latest else known_at)
    with _lock:
        line = _lines.get(key)
        if line is not None:
            _lines.move_to_end(key)
            return line
    line = balances(counted(history, None if key[2] is None else known_at).events).aum
    _keep(_lines, key, line)
    return line


def _keep(kept: OrderedDict, key: tuple, value: object) -> None:
    with _lock:
        kept[key] = value
        while len(kept) > KEPT:
            kept.popitem(last=False)
