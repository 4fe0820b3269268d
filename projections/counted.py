"""Which events count, as known at a system time K (POLICY §3, §6).

An event counts as known at K when it was recorded by K and no correction
recorded by K voids it. Counted events are ordered by business time, then by
stored order (the global position), which decides only where order must
matter within one instant.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any
from uuid import UUID

from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import EventType

CORRECTION = EventType.CORRECTION_RECORDED


@dataclass(frozen=True, slots=True)
class Counted:
    """A customer's counted events in business order, with what voided the rest."""

    events: list[RecordedEvent]
    voided_by: dict[UUID, RecordedEvent]

    def as_of(self, moment: dt.datetime) -> list[RecordedEvent]:
        """Counted events with ``occurred_at`` ≤ ``moment``."""
        if not self.events or self.events[-1].occurred_at <= moment:
            return self.events
        return self.events[: bisect_right(self.events, moment, key=_occurred)]


business_order: Callable[[RecordedEvent], Any] = attrgetter("occurred_at", "position")
"""The sort key of business order: ``(occurred_at, position)``."""
_occurred = attrgetter("occurred_at")


def counted(history: Iterable[RecordedEvent], known_at: dt.datetime | None = None) -> Counted:
    known = list(history) if known_at is None else [e for e in history if e.recorded_at <= known_at]
    voided_by = {e.record.voids_event_id: e for e in known if e.type == CORRECTION}
    events = [e for e in known if e.type != CORRECTION and e.event_id not in voided_by] if voided_by else known
    events.sort(key=business_order)
    return Counted(events, voided_by)
