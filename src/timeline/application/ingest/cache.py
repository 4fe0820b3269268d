"""The ingestor's streams: what it knows of each customer it has seen, held compactly and bounded.

A cached stream keeps its version, head hash, data key and acceptance guard
(compact state, no events), plus the events this process accepted that are
not yet known to be stored. A check that must read past events (a
correction's target, a redemption's points, a referral decision, a
duplicate's stored content) materialises the whole history: the stored rows
up to the last version known committed, then those accepted events. The
materialised histories have a budget of their own, so memory stays bounded
whatever the size of the history (evicting is always safe: the read set
catches a stale view at commit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from timeline.application.batch import UNKNOWN, CachedStream, StreamGuard
from timeline.application.codec import GENESIS_HASH, chain_hash
from timeline.application.keyring import KeyRing
from timeline.application.ports import AppendBatch, EventStore, IndexEntry, StoredRow
from timeline.application.referral_watch import first_deposit
from timeline.domain.recorded import RecordedEvent

Rules = Callable[[list[RecordedEvent], Callable[[], list[RecordedEvent]]], StreamGuard]
"""Builds the guard of a stream from its stored history and a way to read its whole history later."""

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

    def _reader(self, customer_id: str) -> Callable[[], list[RecordedEvent]]:
        return lambda: self.history(customer_id)

    def history(self, customer_id: str) -> list[RecordedEvent]:
        """The stream's whole history as this process holds it: stored, then accepted since (loaded first)."""
        self.load([customer_id])
        stream = self.streams[customer_id]
        if stream.history is None:
            self._materialise(customer_id, stream, self.store.read_stream(customer_id))
            assert stream.history is not None
        return stream.history

    def prefetch(self, customer_ids: Iterable[str]) -> None:
        """Materialise these cached streams' histories in one round trip (the batch's corrections, redemptions)."""
        wanted = [c for c in dict.fromkeys(customer_ids) if c in self.streams and self.streams[c].history is None]
        if wanted:
            rows = self.store.read_streams(wanted)
            for customer_id in wanted:
                self._materialise(customer_id, self.streams[customer_id], rows[customer_id])

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
        for new in batch.events:
            stream = self.streams.get(new.customer_id)
            if stream is not None and new.version > stream.stored_version:
                stream.stored_version = new.version
        for new in batch.events:
            stream = self.streams.get(new.customer_id)
            if stream is not None and stream.accepted and stream.accepted[0].version <= stream.stored_version:
                stream.accepted = [e for e in stream.accepted if e.version > stream.stored_version]

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
