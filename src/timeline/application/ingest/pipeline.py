"""Ingestion: every event is accepted, a duplicate, or rejected with a reason.

The shell around the pure acceptance rules. Events are taken in batches; for
each batch the customers' streams are loaded (and cached across batches, up
to a bound), every event is checked against its customer's history as it
stands with the batch's earlier events applied, referral qualifications are
decided at the event that makes them hold (:mod:`timeline.application.referral_watch`),
and all accepted events are appended in one transaction. Every verdict's
view is checked when that transaction commits: a stream the batch appends to
by its primary key, every other stream or referral count a verdict read by
the batch's read set. If another writer moved any of them, the append fails
whole and the batch is decided again against fresh streams, so no verdict
rests on a view that was stale at commit, nothing is lost and nothing is
stored twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

from timeline.application.batch import CheckedBatch, InflightBatch, Outcome
from timeline.application.ingest.cache import Rules, StreamCache
from timeline.application.ingest.checker import BatchChecker, EngineEvent
from timeline.application.ingest.versions import VersionsInForce
from timeline.application.jsonl import JsonLines
from timeline.application.keyring import KeyRing
from timeline.application.ports import AppendBatch, EventStore, KeyWrapping
from timeline.application.prepare import prepared_lines
from timeline.application.referral_watch import ReferralWatch
from timeline.domain.errors import ConcurrencyConflict

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

MAX_RETRIES = 12
CAREFUL_BATCHES_AFTER_CONFLICT = 20
"""After an optimistic batch turned out to hold stored events, look ids up for this many batches."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Ingestor:
    """Appends events to a store under the acceptance rules."""

    def __init__(
        self,
        store: EventStore,
        wrapper: KeyWrapping,
        rules: Rules,
        clock: Clock = utcnow,
        batch_size: int = 1000,
        referrals: ReferralWatch | None = None,
        validation_worker: bool = True,
        versions: VersionsInForce | None = None,
    ) -> None:
        """``referrals``: decide referral qualifications in place (POLICY §5); ``validation_worker``: validate
        large :class:`~timeline.application.jsonl.JsonLines` inputs in a worker process; ``versions``: the
        store's policy versions the rules ask, read again before each batch is decided."""
        self.store = store
        self.wrapper = wrapper
        self.rules = rules
        self.clock = clock
        self.batch_size = batch_size
        self.referrals = referrals
        self.validation_worker = validation_worker
        self.engine_events: list[Outcome] = []
        """Outcomes of the events the engine wrote itself (qualifications)."""
        self._cache = StreamCache(store, KeyRing(store, wrapper), rules, first_deposits=referrals is not None)
        self._checker = BatchChecker(store, wrapper, self._cache, referrals, versions)
        self._careful_batches = 0
        """How many more batches consult the event-id index before appending (see :meth:`_check`)."""

    def ingest(self, items: Iterable[tuple[int | None, Any]], atomic: bool = False) -> Iterator[Outcome]:
        """Ingest ``(line, raw)`` pairs; ``raw`` is a decoded JSON value or an exception.

        Batches are pipelined: while one is appended by a writer thread (the
        database works on another core), the next is checked against the
        streams as they will be. If the append in flight fails, both batches
        are redone one after the other against fresh streams.

        With ``atomic`` the whole input is one transaction: if any event is
        rejected, nothing is stored and accepted events are reported as rejected
        with the reason "atomic input had rejections".

        Lines from :func:`timeline.application.jsonl.read_lines` are validated by a worker
        process when there are many (:mod:`timeline.application.prepare`).
        """
        if isinstance(items, JsonLines):
            return self._ingest(prepared_lines(items, self.validation_worker), atomic, owned=True)
        return self._ingest(items, atomic)

    def _ingest(self, items: Iterable[tuple[int | None, Any]], atomic: bool, owned: bool = False) -> Iterator[Outcome]:
        """:meth:`ingest`; ``owned``: ``items`` is a generator of ours, closed at the end (stopping its worker)."""
        try:
            if atomic:
                yield from self._atomic(list(items))
            else:
                yield from self._pipelined(items)
        finally:
            if owned:
                items.close()  # type: ignore[attr-defined]

    def _pipelined(self, items: Iterable[tuple[int | None, Any]]) -> Iterator[Outcome]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeline-append") as writer:
            inflight: InflightBatch | None = None
            for work in _chunks(items, self.batch_size):
                checked = self._check(work, assume_new=self._careful_batches == 0)
                self._careful_batches = max(0, self._careful_batches - 1)
                if inflight is not None:
                    try:
                        yield from self._report(self._settle(inflight))
                    except ConcurrencyConflict:
                        self._forget(checked.batch)
                        yield from self._report(self._commit(inflight.items))
                        checked = self._check(work)
                    except BaseException:
                        self._forget(checked.batch)
                        raise
                self._trim(checked.batch)
                inflight = InflightBatch(work, checked, writer.submit(self.store.append, checked.batch))
            if inflight is not None:
                try:
                    yield from self._report(self._settle(inflight))
                except ConcurrencyConflict:
                    yield from self._report(self._commit(inflight.items))

    def append_engine_events(self, events: list[dict[str, Any]]) -> list[Outcome]:
        """Store events the engine decided on (e.g. a qualification found by a repair run)."""
        before = len(self.engine_events)
        self._report(self._commit([(None, EngineEvent(e)) for e in events]))
        return self.engine_events[before:]

    def ingest_one(self, raw: Any) -> Outcome:
        return next(iter(self._report(self._commit([(None, raw)]))))

    def _report(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes of input events; those of engine-written events are kept aside.

        Engine-written events come without an input line, so an outcome with a
        line is an input event's whatever its id. A list, not a generator: one
        Python frame fewer to resume for every outcome reported.
        """
        reported = []
        for outcome in outcomes:
            if outcome.line is None and outcome.event_id in self._checker.engine_ids:
                self.engine_events.append(outcome)
                if outcome.status == "rejected":
                    log.warning("engine event %s not stored: %s", outcome.event_id, outcome.error)
            else:
                reported.append(outcome)
        return reported

    def _atomic(self, items: list[tuple[int | None, Any]]) -> Iterator[Outcome]:
        for attempt in range(MAX_RETRIES):
            checked = self._check(items)
            if any(o is not None and o.status == "rejected" for o in checked.outcomes):
                self._forget(checked.batch)
                yield from checked.refused("not stored: atomic input had rejections")
                return
            try:
                applied = self._applied(checked, self._append(checked.batch))
            except ConcurrencyConflict:
                log.info("concurrent append; retrying atomic input (attempt %d)", attempt + 1)
                _back_off(attempt)
                continue
            yield from self._report(applied)
            return
        raise ConcurrencyConflict(f"gave up after {MAX_RETRIES} concurrent conflicts")

    def _commit(self, items: list[tuple[int | None, Any]]) -> list[Outcome]:
        """Check and append one batch now, retrying on concurrent appends; then its consequences."""
        for attempt in range(MAX_RETRIES):
            checked = self._check(items)
            try:
                return self._applied(checked, self._append(checked.batch))
            except ConcurrencyConflict:
                log.info("concurrent append; retrying batch (attempt %d)", attempt + 1)
                _back_off(attempt)
        raise ConcurrencyConflict(f"gave up after {MAX_RETRIES} concurrent conflicts")

    def _append(self, batch: AppendBatch) -> list[int]:
        try:
            return self.store.append(batch)
        except BaseException:
            self._forget(batch)
            raise

    def _settle(self, inflight: InflightBatch) -> list[Outcome]:
        try:
            positions = inflight.future.result()
        except ConcurrencyConflict:
            self._careful_batches = CAREFUL_BATCHES_AFTER_CONFLICT
            self._forget(inflight.checked.batch)
            raise
        except BaseException:
            self._forget(inflight.checked.batch)
            raise
        return self._applied(inflight.checked, positions)

    def _forget(self, batch: AppendBatch) -> None:
        """Drop what a failed batch touched or read: it may hold events never stored, or be stale."""
        referrals = self.referrals
        for new in batch.events:
            self._cache.evict(new.customer_id)
            self._checker.unsettled.pop(new.event_id.int, None)
            if new.refers_to and referrals is not None:
                referrals.forget([new.refers_to])
        for customer in batch.read_versions:
            self._cache.evict(customer)
        if referrals is not None:
            referrals.forget(batch.read_referrals)

    def _trim(self, batch: AppendBatch) -> None:
        """Keep the cache under its bounds, sparing the streams of ``batch`` (about to be appended)."""
        keep = {e.customer_id for e in batch.events} | set(batch.read_versions)
        self._cache.trim(keep)
        if self.referrals is not None:
            self.referrals.trim(set(self._cache.streams) | set(batch.read_referrals))

    def _applied(self, checked: CheckedBatch, positions: list[int]) -> list[Outcome]:
        """The batch is stored: its events are no longer unsettled; report each outcome with its position."""
        unsettled = self._checker.unsettled
        for new in checked.batch.events:
            unsettled.pop(new.event_id.int, None)
        self._cache.stored(checked.batch)
        return checked.applied(positions)

    def _check(self, items: list[tuple[int | None, Any]], assume_new: bool = False) -> CheckedBatch:
        return self._checker.check(items, self.clock(), assume_new)


def _back_off(attempt: int) -> None:
    """Random exponential back-off, so that writers that keep colliding drift apart."""
    time.sleep(random.uniform(0, 0.005 * 2**attempt))


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
