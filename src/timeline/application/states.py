"""Answering state questions from the store: one customer, or every customer in one pass.

One customer: the stream is read once per process and cached by version;
asking again reads only the events stored since (one indexed query), and
the cached fold grows by them (``timeline.projections.folding.fold``). Every customer
(``--all``): the global log is read once, in pages, and each stream is
folded when the log is exhausted — never customer by customer. On a large
store the customers are split into contiguous ranges of ids of about as
many events each, each read in one pass (batched queries over its streams)
and folded by a worker process or by this one (which takes ranges no worker
has started rather than wait: its results need no pickling back), so that
every core decodes and folds its share; results come in customer order, as
from one process.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from timeline.application.codec import STORED_VALUE_ERRORS, decode, first_invalid
from timeline.application.policy_store import PolicyStream
from timeline.application.ports import EventStore
from timeline.application.stream_cache import CachedStream, StreamCache
from timeline.domain.errors import UnknownCustomer
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.projections.folding import fold
from timeline.projections.state import CustomerState, customer_state

PAGE = 20_000
UNCACHED_BATCH = 200
"""Customers read in one query when answering every customer past the cache's bound."""
VERSIONS_FRESH = 1.0
"""Seconds for which a reader answers under the policy versions it read last."""
PARALLEL_FROM = 100_000
"""Stores with fewer events are evaluated in this process: starting workers would cost more."""
RANGES_PER_PROCESS = 2
MAX_RANGE_EVENTS = 50_000
"""Events of a customer range above which it is cut further: a process holds one range's rows at a time, so
memory stays bounded whatever the size of the store."""
"""Customer ranges per folding process: each range is one scan of the events table, so few, of even sizes.
The first ``workers`` ranges go to the workers at once; this process takes the others from the last."""


@dataclass
class StateReader:
    store: EventStore
    policy: Policy
    _cache: StreamCache = field(default_factory=StreamCache)
    fold_hits: int = 0
    """States answered from the cached fold as it was: no event to fold (the service's metric)."""
    fold_misses: int = 0
    """States that had to fold events: new ones, the whole stream again, or as known at a past instant."""
    _position: int = 0
    """The log position :meth:`cached_states` has read every stream up to."""
    versions: PolicyTimeline | None = None
    """The versions to answer under; None: ``policy`` from the beginning, then the store's published versions
    (read again at most every ``VERSIONS_FRESH`` seconds, so a running service sees a publish within it)."""
    _stream: PolicyStream | None = None
    _read: float = -VERSIONS_FRESH

    def timeline(self) -> PolicyTimeline:
        """The policy versions as known now (``known_at`` narrows them per question)."""
        if self.versions is not None:
            return self.versions
        if self._stream is None:
            self._stream = PolicyStream(self.store, self.policy)
        clock = time.monotonic()
        if clock - self._read >= VERSIONS_FRESH:  # a query per question would double a warm answer's cost
            self._stream.entries()
            self._read = clock
        return self._stream.known()

    def history(self, customer_id: str) -> list[RecordedEvent]:
        """The customer's events in stream order (PII left sealed: projections never read it)."""
        return self._refresh(customer_id).history

    def _refresh(self, customer_id: str) -> CachedStream:
        cached = self._cache.get(customer_id)
        after = cached.history[-1].version if cached else 0
        new = [decode(row, None, False, with_hash=False) for row in self.store.read_stream(customer_id, after)]
        if cached is None and not new:
            raise UnknownCustomer(f"unknown customer {customer_id}: no events stored")
        return self._cache.take(customer_id, new)

    def state(
        self, customer_id: str, as_of: dt.datetime | None = None, known_at: dt.datetime | None = None
    ) -> CustomerState:
        """The state; asked at or after the last event and as known now, it comes from the cached fold."""
        return next(self.states(customer_id, (as_of, known_at)))

    def states(self, customer_id: str, *asks: tuple[dt.datetime | None, dt.datetime | None]) -> Iterator[CustomerState]:
        """The state at each ``(as_of, known_at)`` (``None``: now), each worked out when taken, all from one
        read of the stream and its one cached fold (the caller holds any lock until it has taken them)."""
        now = dt.datetime.now(dt.UTC)
        cached = self._refresh(customer_id)
        for as_of, known_at in asks:
            yield self._answer(cached, as_of or now, known_at or now)

    def cached_states(
        self, *asks: tuple[dt.datetime | None, dt.datetime | None]
    ) -> Iterator[tuple[str, list[CustomerState | None]]]:
        """Every customer's state at each ``(as_of, known_at)`` (``None`` where not registered then), in customer
        order, from the cached folds: only the log after the position last read is read (all of it the first
        time), and each stream's new events are folded onto its cached fold. Streams the cache does not hold
        (a store larger than its bound) are read in batches and folded without being kept."""
        self._sync()
        now = dt.datetime.now(dt.UTC)
        everyone = self.store.customer_ids() if self._cache.evicted else self._cache.ids()
        uncached = self._uncached([c for c in everyone if c not in self._cache])
        pending = next(uncached, None)
        for customer_id in everyone:
            if pending is not None and pending[0] == customer_id:
                cached, pending = CachedStream.of(pending[1]), next(uncached, None)  # answered, not kept
            elif (cached := self._cache.get(customer_id)) is None:
                continue  # named by some table but without events: no state to give
            answers: list[CustomerState | None] = []
            for as_of, known_at in asks:
                try:
                    answers.append(self._answer(cached, as_of or now, known_at or now))
                except UnknownCustomer:
                    answers.append(None)
            yield customer_id, answers

    def _uncached(self, customer_ids: list[str]) -> Iterator[tuple[str, list[RecordedEvent]]]:
        """The streams of ``customer_ids`` (sorted) in that order, read ``UNCACHED_BATCH`` customers at a time."""
        for start in range(0, len(customer_ids), UNCACHED_BATCH):
            batch = customer_ids[start : start + UNCACHED_BATCH]
            rows = self.store.read_streams(batch)
            for customer_id in batch:
                if stream := rows.get(customer_id):
                    yield customer_id, [decode(row, None, False, with_hash=False) for row in stream]

    def _sync(self) -> None:
        """Bring every kept stream up to the log's head (one kept only in part is read on from its version), and
        keep the streams the log begins (a stream not kept whose later events pass by stays out: it is read
        whole when asked)."""
        while rows := self.store.read_log(self._position, PAGE):
            for row in rows:
                cached = self._cache.get(row.customer_id)
                version = cached.history[-1].version if cached else 0
                if row.version == version + 1:
                    self._cache.take(row.customer_id, [decode(row, None, False, False)])
                elif row.version > version + 1 and cached is not None:
                    self._refresh(row.customer_id)
            self._position = rows[-1].position

    def _answer(self, cached: CachedStream, as_of: dt.datetime, known_at: dt.datetime) -> CustomerState:
        try:
            return self._evaluate(cached, as_of, known_at)
        except STORED_VALUE_ERRORS:
            corrupt = first_invalid(cached.history)
            if corrupt is None:
                raise
            raise corrupt from None

    def _evaluate(self, cached: CachedStream, as_of: dt.datetime, known_at: dt.datetime) -> CustomerState:
        versions = self.timeline().known_at(known_at)
        if cached.last_recorded is not None and known_at >= cached.last_recorded:
            folded = fold(cached.history, versions, cached.folded)
            hit = folded is cached.folded
            self.fold_hits += hit
            self.fold_misses += not hit
            cached.folded = folded
            return folded.state(cached.history, versions, as_of, known_at)
        self.fold_misses += 1
        return customer_state(cached.history, versions, as_of, known_at)

    def all_states(
        self,
        as_of: dt.datetime | None = None,
        known_at: dt.datetime | None = None,
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
    ) -> Iterator[CustomerState]:
        """Every registered customer's state, in customer order, from one pass over the log.

        ``workers``: processes to fold in, this one included (default: one per
        core once the store holds ``PARALLEL_FROM`` events; 1 reads the log here).
        """
        now = dt.datetime.now(dt.UTC)
        as_of, known_at = as_of or now, known_at or now
        versions = self.timeline().known_at(known_at)
        head = self.store.head_position()
        if workers is None:
            workers = (os.cpu_count() or 1) if head >= PARALLEL_FROM else 1
        if self.store.opener() is None:
            workers = 1
        if workers > 1:
            yield from self._in_workers(workers, head, versions, as_of, known_at, progress)
            return
        streams = self.read_all(progress)
        for customer_id in sorted(streams):
            try:
                yield state_of(streams[customer_id], versions, as_of, known_at)
            except UnknownCustomer:
                continue

    def _in_workers(
        self,
        workers: int,
        head: int,
        versions: PolicyTimeline,
        as_of: dt.datetime,
        known_at: dt.datetime,
        progress: Callable[[int, int], None] | None,
    ) -> Iterator[CustomerState]:
        """Shards of customers folded by ``workers - 1`` worker processes and by this one.

        A shard folded here is not pickled back (for a worker that costs about as much as decoding): this
        process takes the last shard no worker has started whenever the next one it needs is not done.
        """
        customers = sorted(self.store.customer_ids())
        lengths = self.store.heads(customers)
        sizes = [lengths.get(c, (1, ""))[0] for c in customers]
        count = max(workers * RANGES_PER_PROCESS, -(-sum(sizes) // MAX_RANGE_EVENTS))
        shards = even_shards(customers, sizes, count)
        done = 0
        here: dict[int, tuple[int, list[CustomerState]]] = {}
        spawn = multiprocessing.get_context("spawn")  # no inherited database connections
        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=spawn) as pool:
            futures = [pool.submit(_states_of, self.store.opener(), versions, s, as_of, known_at) for s in shards]
            for index, future in enumerate(futures):
                while index not in here and not future.done():
                    stolen = next(
                        (j for j in range(len(futures) - 1, index - 1, -1) if j not in here and futures[j].cancel()),
                        None,
                    )
                    if stolen is None:
                        break
                    here[stolen] = _fold_shard(self.store, versions, shards[stolen], as_of, known_at)
                events, states = here.pop(index) if index in here else future.result()
                done += events
                if progress:
                    progress(min(done, head), head)
                yield from states

    def read_all(self, progress: Callable[[int, int], None] | None = None) -> dict[str, list[RecordedEvent]]:
        """Every stream, from one pass over the log (positions ascend, so each stream is in version order)."""
        head = self.store.head_position()
        streams: dict[str, list[RecordedEvent]] = {}
        after = 0
        while True:
            rows = self.store.read_log(after, PAGE)
            if not rows:
                break
            for row in rows:
                event = decode(row, None, False, with_hash=False)
                stream = streams.get(row.customer_id)
                if stream is None:
                    streams[row.customer_id] = [event]
                else:
                    stream.append(event)
            after = rows[-1].position
            if progress:
                progress(after, head)
        return streams


def state_of(
    history: list[RecordedEvent], policy: PolicyTimeline, as_of: dt.datetime, known_at: dt.datetime
) -> CustomerState:
    """:func:`customer_state`, naming the stored event when a value in it made the fold fail."""
    try:
        return customer_state(history, policy, as_of, known_at)
    except STORED_VALUE_ERRORS:
        corrupt = first_invalid(history)
        if corrupt is None:
            raise  # no stored event is at fault: a bug, with its traceback
        raise corrupt from None


def even_shards(customers: list[str], lengths: list[int], count: int) -> list[list[str]]:
    """``customers`` cut into at most ``count`` contiguous ranges of about as many events each.

    Each range costs one query, a scan of the events table: few ranges, but even ones, so that no process
    is left with the heavy end (early customers have the longest histories).
    """
    total = sum(lengths)
    shards: list[list[str]] = []
    start = taken = 0
    for index, length in enumerate(lengths):
        taken += length
        if taken * count >= total * (len(shards) + 1) or index == len(customers) - 1:
            shards.append(customers[start : index + 1])
            start = index + 1
    return shards


def _states_of(
    opener: Callable[[], EventStore],
    policy: PolicyTimeline,
    customer_ids: list[str],
    as_of: dt.datetime,
    known_at: dt.datetime,
) -> tuple[int, list[CustomerState]]:
    """In a worker: :func:`_fold_shard` on a store of its own."""
    from timeline.application.process import collector_paused, tune_gc_for_bulk_work

    tune_gc_for_bulk_work()
    store = opener()
    try:
        with collector_paused():
            return _fold_shard(store, policy, customer_ids, as_of, known_at)
    finally:
        store.close()


def _fold_shard(
    store: EventStore, policy: PolicyTimeline, customer_ids: list[str], as_of: dt.datetime, known_at: dt.datetime
) -> tuple[int, list[CustomerState]]:
    """Read these customers' streams (batched queries), fold each; the event count for progress."""
    rows = store.read_streams(customer_ids)
    events = 0
    states = []
    for customer_id in customer_ids:
        history = [decode(row, None, False, with_hash=False) for row in rows[customer_id]]
        events += len(history)
        try:
            states.append(state_of(history, policy, as_of, known_at))
        except UnknownCustomer:
            continue
    return events, states
