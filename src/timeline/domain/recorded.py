"""A stored event as readers see it: what projections, verify and the relay consume."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from timeline.domain.types import RECORDS, Record

ERASED = {"$erased": True}
"""What a PII field reads as once its customer's key has been destroyed (POLICY §7)."""

ENCRYPTED = {"$encrypted": True}
"""What a PII field reads as when the reader was not given keys (e.g. the Kafka relay)."""


@dataclass(slots=True)
class RecordedEvent:
    """One stored event: a value, never changed once made.

    ``data`` is in JSON form: money as two-place decimal strings, dates as
    ``YYYY-MM-DD``; PII fields are plaintext, :data:`ERASED` or :data:`ENCRYPTED`.
    ``position`` is the global log position (commit order, gaps allowed);
    ``version`` is the 1-based position within the customer's stream.
    ``type`` is an :class:`~timeline.domain.types.EventType` value (a member compares equal to its text).

    Not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``, a microsecond
    per event, a quarter of decoding one; readers decode every event of the store.
    """

    position: int
    customer_id: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    source: str | None
    actor: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str
    _record: Record | None = field(default=None, repr=False, compare=False)

    @property
    def record(self) -> Any:
        """``data`` as its type's typed record (:mod:`timeline.domain.types`), read on first use; None for a type
        whose data no rule reads. (A property on a slot set to None: an unset slot with ``__getattr__`` would cost
        an AttributeError, a microsecond, at each first read.)"""
        record = self._record
        if record is None:
            read = RECORDS.get(self.type)
            if read is None:
                return None
            record = self._record = read(self.data)
        return record

    def envelope(self) -> dict[str, Any]:
        """The event in its input JSON form (what a sender would have sent)."""
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "schema_version": self.schema_version,
            "customer_id": self.customer_id,
            "occurred_at": iso(self.occurred_at),
            "source": self.source,
            "actor": self.actor,
            "data": self.data,
        }


def iso(moment: dt.datetime) -> str:
    """Canonical UTC text of an instant, as stored: ``2025-03-01T01:30:00Z``."""
    text = moment.astimezone(dt.UTC).isoformat()
    return text.replace("+00:00", "Z")
