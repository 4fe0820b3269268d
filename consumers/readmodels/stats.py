"""What a consumer has done: per committed batch (handed to ``on_commit``) and over a run."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from timeline.domain.recorded import RecordedEvent


@dataclass
class BatchResult:
    """What one committed transaction did (handed to ``on_commit``)."""

    messages: int
    applied: list[RecordedEvent]
    duplicates: int
    dead_letters: int
    customers: int
    polled_at: float
    """``time.time()`` when the batch's first records were returned by the poll."""
    committed_at: float
    """``time.time()`` just after the database commit."""
    as_of: dt.datetime
    fold_seconds: float = 0.0
    """Time spent computing states (folding and asking) in this batch."""


@dataclass
class ConsumerStats:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    customers: int = 0
    ticks: int = 0
    ticked: int = 0
    failures: int = 0
    errors: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def add(self, batch: BatchResult) -> None:
        self.messages += batch.messages
        self.applied += len(batch.applied)
        self.duplicates += batch.duplicates
        self.dead_letters += batch.dead_letters
        self.customers += batch.customers
        self.batches += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "customers_evaluated": self.customers,
            "ticks": self.ticks,
            "ticked": self.ticked,
            "failures": self.failures,
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "events_per_second": round(self.applied / self.elapsed, 1) if self.elapsed > 0 else None,
            "last_error": self.last_error,
        }
