"""What an ingest batch is made of: input events, cached streams, checked batches, outcomes.

The ingestor (:mod:`timeline.application.ingest`) works on these; they hold data and
how it is reported, no rule and no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from timeline.application.ports import AppendBatch
from timeline.domain.recorded import RecordedEvent

UNKNOWN: Any = object()
"""A value not worked out yet."""

Status = Literal["accepted", "duplicate", "rejected"]


class StreamGuard(Protocol):
    """The acceptance rules of one customer's stream (POLICY §2), kept up to date as events are stored."""

    def check(self, event: RecordedEvent) -> None:
        """Raise :class:`RejectedEvent` if ``event`` may not follow the stream."""

    def record(self, event: RecordedEvent) -> None:
        """Take an accepted event (already part of the stream's history) into account."""


class Outcome(NamedTuple):
    """What became of one input event (a named tuple: one is made per event)."""

    line: int | None
    status: Status
    event_id: uuid.UUID | None = None
    customer_id: str | None = None
    position: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "event_id": str(self.event_id) if self.event_id else None,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class Summary:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class CachedStream:
    """A customer's stream as this process knows it, plus its data key.

    No events but those accepted and not yet known to be stored, and the
    whole history only while a check needs it
    (:class:`timeline.application.ingest.cache.StreamCache`). Events this
    process appended keep the provisional position they were checked with: a
    stand-in that orders them after every event read from the store and
    among themselves in append order, which is all the rules and projections
    read of a position. The store's positions are reported in each
    :class:`Outcome`. Cached events carry no chain hash (the rules never read
    it); ``head_hash`` is the stream's.
    """

    version: int
    stored_version: int
    """The last version known committed: the stored rows up to it, then ``accepted``, make the history."""
    head_hash: str
    dek: bytes | None
    erased: bool
    guard: StreamGuard
    first_deposit: Any = UNKNOWN
    """The instant of the first counted deposit (``None``: none yet), worked out when first needed."""
    accepted: list[RecordedEvent] = field(default_factory=list)
    """Events accepted after ``stored_version``, in version order."""
    history: list[RecordedEvent] | None = None
    """The whole history, while materialised."""


@dataclass(slots=True)
class CheckedBatch:
    """A checked batch: what to append, and the outcomes to report once it is appended."""

    outcomes: list[Outcome | None]
    """One per input event; ``None`` for an accepted one: its outcome needs the position the append gives it."""
    lines: list[int | None]
    """The input line of each event of ``batch``, in order."""
    slots: list[int | None]
    """The index in ``outcomes`` of each event of ``batch``, in order; ``None`` for an engine-written one."""
    batch: AppendBatch
    recorded_at: str
    """The batch's ``recorded_at``, in canonical text."""
    referrals: dict[str, int] = field(default_factory=dict)
    """How many ``referral.made`` events of ``batch`` name each referred customer."""

    def applied(self, positions: list[int]) -> list[Outcome]:
        """The outcomes, accepted events with their positions; engine-written events' last."""
        return self._settled(positions, "accepted", None)

    def refused(self, error: str) -> list[Outcome]:
        """The outcomes, accepted events reported as rejected with ``error`` (nothing was stored)."""
        return self._settled([None] * len(self.slots), "rejected", error)

    def _settled(self, positions: list[Any], status: Status, error: str | None) -> list[Outcome]:
        result = list(self.outcomes)
        engine = []
        for slot, line, new, position in zip(self.slots, self.lines, self.batch.events, positions, strict=True):
            outcome = Outcome(line, status, new.event_id, new.customer_id, position, error)
            if slot is None:
                engine.append(outcome)
            else:
                result[slot] = outcome
        return result + engine  # type: ignore[operator]


@dataclass(slots=True)
class InflightBatch:
    """A checked batch whose append runs in the writer thread."""

    items: list[tuple[int | None, Any]]
    checked: CheckedBatch
    future: Future[list[int]]


class PendingEvent(NamedTuple):
    line: int | None
    content: dict[str, Any]
    event_id: uuid.UUID
    sent_id: uuid.UUID | None
    """The sender's event id; an engine-assigned one means nothing in a reject."""
    occurred_at: dt.datetime
