"""The ingestor's streams: what it knows of each customer it has seen, held compactly and bounded.

A cached stream keeps its version, head hash, data key and acceptance guard
(compact state, no events), plus the events this process accepted that are
not yet known to be stored. A check that reads a past event (a correction's
target) gets just that row, fetched for the whole batch in one round trip
(:meth:`StreamCache.prefetch`).
One that reads the whole history (a referral decision, a first deposit after
a correction) materialises it: the stored rows up to the last version known
committed, then those accepted events. The materialised histories have a
budget of their own, so memory stays bounded whatever the size of the
history (evicting is always safe: the read set catches a stale view at
commit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from timeline.application.batch import UNKNOWN, CachedStream, StreamGuard
from timeline.application.codec import GENESIS_HASH, chain_hash
from timeline.application.keyring import KeyRing
from timeline.application.ports import AppendBatch, EventStore, IndexEntry, StoredRow
from timeline.application.referral_watch import first_deposit
from timeline.domain.recorded import RecordedEvent
from timeline.projections.acceptance import PastEvents

Rules = Callable[[list[RecordedEvent], PastEvents], StreamGuard]
"""Builds the guard of a stream from its stored history and a way to read its past events later."""

MAX_CACHED_EVENTS = 1_000_000
"""Events of the cached streams above which the cache is halved, oldest-loaded first. A cached stream holds
no events, only its guard's compact state (tens of bytes an event), so the bound holds a large branch's
working set: an input interleaving more customers than fit would reload and refold streams on every batch
(measured with decoded histories: a bound of 100,000 made 200,000 events of 4,000 customers 2.3x slower)."""
MAX_HISTORY_EVENTS = 20_000
"""Events of materialised histories above which they are dropped, oldest first, down to half."""


class StreamCache:
    """Customer streams as this process knows them, loaded on demand, bounded."""

    def __init__(self, store: EventStore, ring: KeyRing, rules: Rules, first_deposits: bool) -> None:
        """``first_deposits``: work out each stream's first counted deposit when it is loaded (qualification)."""
        self.store = store
        self.ring = ring
        self.rules = rules
        self.first_deposits = first_deposits
        self.streams: dict[str, CachedStream] = {}
        self._events = 0
        """Events of the cached streams (kept under :data:`MAX_CACHED_EVENTS` between batches)."""
        self._history_events = 0
        """Events of the materialised histories (kept under :data:`MAX_HISTORY_EVENTS` between batches)."""
        self._targets: dict[int, RecordedEvent] = {}
        """The stored events the batch's corrections name, by id as an integer (fetched per batch)."""
        self._looked_up: set[tuple[str, int]] = set()
        """(customer, event id as an integer) of the batch's correction targets: fetched if stored in that stream."""

    def __getitem__(self, customer_id: str) -> CachedStream:
        return self.streams[customer_id]

    def get(self, customer_id: str) -> CachedStream | None:
        return self.streams.get(customer_id)

    def load(self, customer_ids: Iterable[str]) -> None:
        """Have these customers' streams at hand: one round trip for all that are not."""
        missing = [c for c in dict.fromkeys(customer_ids) if c not in self.streams]
        if not missing:
            return
        rows = self.store.read_streams(missing)
        keys = self.ring.keys(missing)
        for customer_id in missing:
            stream = rows[customer_id]
            history = self.ring.decode(stream, with_hash=False)
            version = history[-1].version if history else 0
            self._events += version
            self.streams[customer_id] = CachedStream(
                version=version,
                stored_version=version,
                head_hash=chain_hash(stream[-1].state) if stream else GENESIS_HASH,
                dek=keys[customer_id].dek,
                erased=keys[customer_id].erased,
                guard=self.rules(history, self._reader(customer_id)),
                first_deposit=first_deposit(history) if self.first_deposits else UNKNOWN,
            )

    def _reader(self, customer_id: str) -> PastEvents:
        return _Past(self, customer_id)

    def history(self, customer_id: str) -> list[RecordedEvent]:
        """The stream's whole history as this process holds it: stored, then accepted since (loaded first)."""
        self.load([customer_id])
        stream = self.streams[customer_id]
        if stream.history is None:
            self._materialise(customer_id, stream, self.store.read_stream(customer_id))
            assert stream.history is not None
        return stream.history

    def prefetch(self, targets: Iterable[tuple[str, UUID]]) -> None:
        """Fetch the stored events the batch's corrections name: two queries if there are any, else none.

        ``targets``: (customer, event id) of the batch's corrections. Events of a materialised history, or
        accepted and not yet stored, are at hand already.
        """
        self._targets, self._looked_up = {}, set()
        wanted = [(c, t) for c, t in dict.fromkeys(targets) if c in self.streams and self.streams[c].history is None]
        if not wanted:
            return
        keys: list[tuple[str, int]] = []
        entries = self.store.lookup_events([t for _, t in wanted])
        for customer_id, target in wanted:
            self._looked_up.add((customer_id, target.int))
            entry = entries.get(target)
            if entry is not None and entry.customer_id == customer_id:
                if entry.version <= self.streams[customer_id].stored_version:
                    keys.append((customer_id, entry.version))
        if not keys:
            return
        keys = list(dict.fromkeys(keys))
        rows = self.store.read_rows(keys)
        if len(rows) != len(keys):
            missing = next(k for k in keys if k not in rows)
            raise AssertionError(f"stream {missing[0]} holds fewer events than were read from it")
        for event in self.ring.decode(list(rows.values()), with_hash=False):
            self._targets[event.event_id.int] = event

    def event(self, customer_id: str, event_id: UUID) -> RecordedEvent | None:
        """The event of this (cached) stream with this id, if it has one: fetched, accepted, or read."""
        stream = self.streams[customer_id]
        if stream.history is not None:
            return next((e for e in stream.history if e.event_id == event_id), None)
        found = next((e for e in stream.accepted if e.event_id == event_id), None)
        if found is not None:
            return found
        found = self._targets.get(event_id.int)
        if found is not None and found.customer_id == customer_id:
            return found
        if (customer_id, event_id.int) in self._looked_up:
            return None  # not stored in this stream up to the version known committed, nor accepted since
        return next((e for e in self.history(customer_id) if e.event_id == event_id), None)

    def _materialise(self, customer_id: str, stream: CachedStream, rows: list[StoredRow]) -> None:
        """The stored rows up to the last version known committed (later ones are another writer's), then ours."""
        known = self.ring.decode([r for r in rows if r.version <= stream.stored_version], with_hash=False)
        if len(known) != stream.stored_version:
            raise AssertionError(f"stream {customer_id} holds fewer events than were read from it")
        stream.history = known + stream.accepted
        self._history_events += len(stream.history)

    def accepted(self, stream: CachedStream, event: RecordedEvent) -> None:
        """An event accepted into ``stream`` (appended to the batch, not yet stored)."""
        stream.accepted.append(event)
        if stream.history is not None:
            stream.history.append(event)
            self._history_events += 1
        self._events += 1

    def stored(self, batch: AppendBatch) -> None:
        """The batch is committed: its events no longer need holding, and the keys it made can be read."""
        for customer_id in batch.new_keys:
            self.ring.forget(customer_id)  # the ring read no key before this batch stored one
        last = {new.customer_id: new.version for new in batch.events}  # a stream's events come in version order
        streams = self.streams
        for customer_id, version in last.items():
            stream = streams.get(customer_id)
            if stream is not None and version > stream.stored_version:
                stream.stored_version = version
                accepted = stream.accepted
                if accepted and accepted[0].version <= version:
                    stream.accepted = [e for e in accepted if e.version > version]

    def stored_envelopes(self, entries: Iterable[IndexEntry]) -> dict[Any, dict[str, Any]]:
        """The input form of stored events (for duplicate checks), by event id: only these rows are read."""
        entries = list(entries)
        rows = self.store.read_rows([(e.customer_id, e.version) for e in entries])
        self.ring.keys({e.customer_id for e in entries})
        by_id = {}
        for entry in entries:
            row = rows[(entry.customer_id, entry.version)]
            by_id[entry.event_id] = self.ring.decode([row], with_hash=False)[0].envelope()
        return by_id

    def drop_stale(self, entries: Iterable[IndexEntry]) -> None:
        """Forget cached streams shorter than a stored event proves them to be (another writer appended)."""
        for entry in entries:
            cached = self.streams.get(entry.customer_id)
            if cached is not None and cached.version < entry.version:
                self.evict(entry.customer_id)

    def evict(self, customer_id: str) -> None:
        stream = self.streams.pop(customer_id, None)
        if stream is not None:
            self._events -= stream.version
            if stream.history is not None:
                self._history_events -= len(stream.history)
        self.ring.forget(customer_id)

    def trim(self, keep: set[str]) -> None:
        """Keep the cache under its bounds, sparing the streams named in ``keep`` (about to be appended)."""
        if self._history_events > MAX_HISTORY_EVENTS:
            for stream in self.streams.values():
                if self._history_events <= MAX_HISTORY_EVENTS // 2:
                    break
                if stream.history is not None:
                    self._history_events -= len(stream.history)
                    stream.history = None
        if self._events <= MAX_CACHED_EVENTS:
            return
        for customer_id in list(self.streams):
            if self._events <= MAX_CACHED_EVENTS // 2:
                break
            if customer_id not in keep:
                self.evict(customer_id)


class _Past:
    """:class:`PastEvents` of one cached stream, for its guard."""

    __slots__ = ("cache", "customer_id")

    def __init__(self, cache: StreamCache, customer_id: str) -> None:
        self.cache = cache
        self.customer_id = customer_id

    def event(self, event_id: UUID) -> RecordedEvent | None:
        return self.cache.event(self.customer_id, event_id)
