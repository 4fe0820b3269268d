"""Which events count, as known at a system time K (RULES §3, §6).

An event counts as known at K when it was recorded by K and no correction
recorded by K voids it. Counted events are ordered by business time, then by
stored order (the global position), which decides only where order must
matter within one instant.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from timeline.recorded import RecordedEvent

CORRECTION = "correction.recorded"


@dataclass(frozen=True, slots=True)
class Counted:
    """A customer's counted events in business order, with what voided the rest."""

    events: list[RecordedEvent]
    voided_by: dict[UUID, RecordedEvent]

    def as_of(self, moment: dt.datetime) -> list[RecordedEvent]:
        """Counted events with ``occurred_at`` ≤ ``moment``."""
        return self.events[: bisect_right(self.events, moment, key=_occurred)]


def counted(history: Iterable[RecordedEvent], known_at: dt.datetime | None = None) -> Counted:
    known = [e for e in history if known_at is None or e.recorded_at <= known_at]
    voided_by = {UUID(e.data["voids_event_id"]): e for e in known if e.type == CORRECTION}
    events = [e for e in known if e.type != CORRECTION and e.event_id not in voided_by]
    events.sort(key=_business_order)
    return Counted(events, voided_by)


def _business_order(event: RecordedEvent) -> tuple[dt.datetime, int]:
    return event.occurred_at, event.position


def _occurred(event: RecordedEvent) -> dt.datetime:
    return event.occurred_at
