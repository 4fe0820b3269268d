"""Customer histories held in memory between batches, bounded by the events they hold.

A batch costs one fold per customer touched, not one per event: the history is
read from the consumer's copy on a miss and kept (least recently used first
out), and with it its fold (:func:`timeline.projections.folding.fold`), which
events after every counted one extend instead of folding the whole history again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from timeline.domain.recorded import RecordedEvent
from timeline.projections.folding import Folded

CACHE_EVENTS = 50_000
"""Events of decoded history kept in memory, with their folds (about 1.1 KB of resident memory an event, so
about 55 MB whatever the size of the history; 150,000 put a whole-backlog run over 500 MB): a miss reads the
copy again. A topic interleaves every customer, so during a backlog a cache smaller than the branch would read
and fold histories again on every batch: a batch applied behind (:mod:`.projector`) leaves the customers it
misses pending instead, folded once at the end."""


class HistoryCache:
    """Customer histories (by version), least recently used first out, bounded by events held."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._streams: OrderedDict[str, list[RecordedEvent]] = OrderedDict()
        self.memo: dict[str, Any] = {}
        """What a subclass remembers of a customer's last written row; forgotten with the history."""
        self.folds: dict[str, Folded] = {}
        """The last fold of each cached history (reused while the history only grows); forgotten with it."""
        self.hits = 0
        self.misses = 0
        """Customers of a batch found here, and read from the copy (since the cache was made)."""

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self._streams

    def get(self, customer_id: str) -> list[RecordedEvent]:
        self._streams.move_to_end(customer_id)
        return self._streams[customer_id]

    def put(self, customer_id: str, history: list[RecordedEvent]) -> None:
        self.folds.pop(customer_id, None)
        old = self._streams.pop(customer_id, None)
        self.size += len(history) - (len(old) if old else 0)
        self._streams[customer_id] = history

    def extend(self, customer_id: str, events: Sequence[RecordedEvent]) -> None:
        history = self.get(customer_id)
        ordered = not history or history[-1].version < events[0].version
        history.extend(events)
        if not ordered or any(a.version >= b.version for a, b in zip(events, events[1:], strict=False)):
            history.sort(key=lambda e: e.version)
        self.size += len(events)

    def discard(self, customer_ids: Iterable[str]) -> None:
        for c in customer_ids:
            self.memo.pop(c, None)
            self.folds.pop(c, None)
            old = self._streams.pop(c, None)
            if old:
                self.size -= len(old)

    def trim(self) -> None:
        while self.size > self.limit and len(self._streams) > 1:
            customer_id, old = self._streams.popitem(last=False)
            self.memo.pop(customer_id, None)
            self.folds.pop(customer_id, None)
            self.size -= len(old)

    def clear(self) -> None:
        self._streams.clear()
        self.memo.clear()
        self.folds.clear()
        self.size = 0
