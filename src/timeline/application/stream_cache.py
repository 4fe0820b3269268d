"""The state reader's decoded streams: kept to answer "now" from a cached fold, bounded by the events held.

A running service asks about the same customers again and again; each answer then reads only the events
stored since (one indexed query) and folds them onto the cached fold. Kept without a bound, every
customer ever asked would stay decoded for the life of the process. The least recently asked streams
leave first once the cache holds more than its bound of events; one asked again is read again, whole.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass, field

from timeline.domain.recorded import RecordedEvent
from timeline.projections.folding import Folded

CACHE_EVENTS = 300_000
"""Decoded events the cache holds at most: about 390 MB with their folds (1.3 KB an event, measured on a
generated branch), a whole 2,000-customer branch over three years (about 250,000 events). The stream
being answered always stays, however long."""


@dataclass
class CachedStream:
    """A stream as read so far, and the fold of all of it (grown with the stream when asked "now")."""

    history: list[RecordedEvent] = field(default_factory=list)
    last_recorded: dt.datetime | None = None
    folded: Folded | None = None

    @classmethod
    def of(cls, history: list[RecordedEvent]) -> CachedStream:
        """A whole stream as read."""
        return cls(history, max((e.recorded_at for e in history), default=None))


class StreamCache:
    """Streams by customer id, least recently taken first out once more than ``limit`` events are held."""

    def __init__(self, limit: int = CACHE_EVENTS) -> None:
        self.limit = limit
        self.held = 0
        """Events held, over every stream kept."""
        self.evicted = 0
        """Streams let go so far: once one has been, the cache no longer holds every stream it was given."""
        self._streams: OrderedDict[str, CachedStream] = OrderedDict()

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    def get(self, customer_id: str) -> CachedStream | None:
        """The stream if kept (not counted as a use: a log sync passing by does not keep a stream warm)."""
        return self._streams.get(customer_id)

    def ids(self) -> list[str]:
        return sorted(self._streams)

    def take(self, customer_id: str, new: list[RecordedEvent]) -> CachedStream:
        """The stream, extended by events read after its last (in version order), now the most recently used."""
        cached = self._streams.get(customer_id)
        if cached is None:
            cached = self._streams[customer_id] = CachedStream()
        else:
            self._streams.move_to_end(customer_id)
        if new:
            cached.history.extend(new)
            self.held += len(new)
            latest = max(e.recorded_at for e in new)
            if cached.last_recorded is None or latest > cached.last_recorded:
                cached.last_recorded = latest
            self._evict()
        return cached

    def _evict(self) -> None:
        while self.held > self.limit and len(self._streams) > 1:
            _, oldest = self._streams.popitem(last=False)
            self.held -= len(oldest.history)
            self.evicted += 1
