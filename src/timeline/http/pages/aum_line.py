"""The AUM line a chart draws, folded once per stream version and system time (not once per page view).

The line of every counted event (``projections.balances``): a chart cuts it at its ``as of``. Kept for the
last few customers asked; a stream that grew is another key, so an answer is never stale.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence

from timeline.domain.recorded import RecordedEvent
from timeline.projections.balances import StepLine, balances
from timeline.projections.counted import counted

KEPT = 64

_lines: OrderedDict[tuple[str, int, dt.datetime | None], StepLine] = OrderedDict()
_lock = threading.Lock()


def aum_line(customer_id: str, history: Sequence[RecordedEvent], known_at: dt.datetime) -> StepLine:
    """AUM over business time from the events of ``history`` recorded by ``known_at``."""
    latest = max((e.recorded_at for e in history), default=known_at)
    key = (customer_id, len(history), None if known_at >= latest else known_at)
    with _lock:
        line = _lines.get(key)
        if line is not None:
            _lines.move_to_end(key)
            return line
    line = balances(counted(history, None if key[2] is None else known_at).events).aum
    with _lock:
        _lines[key] = line
        while len(_lines) > KEPT:
            _lines.popitem(last=False)
    return line
