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
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

from timeline.application.batch import (
    UNKNOWN,
    CachedStream,
    CheckedBatch,
    InflightBatch,
    Outcome,
    PendingEvent,
    StreamGuard,
)
from timeline.application.codec import GENESIS_HASH, chain_hash, comparable, encode
from timeline.application.jsonl import JsonLines
from timeline.application.keyring import KeyRing
from timeline.application.ports import AppendBatch, EventStore, KeyWrapping, NewEvent
from timeline.application.prepare import Prepared, Refused, claimed_id, prepare, prepared_lines
from timeline.application.referral_watch import ReferralWatch, first_deposit
from timeline.domain.errors import ConcurrencyConflict, RejectedEvent, UnknownTarget
from timeline.domain.events import ENGINE_ONLY_TYPES
from timeline.domain.recorded import RecordedEvent, iso

log = logging.getLogger(__name__)

Rules = Callable[[list[RecordedEvent]], StreamGuard]
"""Builds the guard of a stream from its history list (which the ingestor keeps growing)."""
Clock = Callable[[], dt.datetime]

MAX_RETRIES = 12
CAREFUL_BATCHES_AFTER_CONFLICT = 20
"""After an optimistic batch turned out to hold stored events, look ids up for this many batches."""
PROVISIONAL_POSITIONS = 1 << 62
"""Above every position a store gives: where provisional positions start (see :class:`CachedStream`)."""
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_CACHED_EVENTS = 1_000_000
"""Cached events above which the stream cache is halved, oldest-loaded first: memory stays bounded, whatever
the history. Evicting is always safe (the read set catches a stale view), but an input that interleaves more
customers than fit reloads and refolds streams on every batch (measured: 200,000 events of 4,000 customers
took 2.3x as long with a bound of 100,000), so the bound is set to hold a large branch's working set."""


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
    ) -> None:
        """``referrals``: decide referral qualifications in place (RULES §5); ``validation_worker``: validate
        large :class:`~timeline.application.jsonl.JsonLines` inputs in a worker process."""
        self.store = store
        self.wrapper = wrapper
        self.rules = rules
        self.clock = clock
        self.batch_size = batch_size
        self.referrals = referrals
        self.validation_worker = validation_worker
        self.engine_events: list[Outcome] = []
        """Outcomes of the events the engine wrote itself (qualifications)."""
        self._engine_ids: set[uuid.UUID] = set()
        self._ring = KeyRing(store, wrapper)
        self._streams: dict[str, CachedStream] = {}
        self._cached_events = 0
        """Events held by ``_streams`` (kept under :data:`MAX_CACHED_EVENTS` between batches)."""
        self._unsettled: dict[int, dict[str, Any]] = {}
        """Content of accepted events not yet known to be stored, by event id as an integer (duplicates across
        batches; an integer hashes in C, a UUID in Python)."""
        self._careful_batches = 0
        """How many more batches consult the event-id index before appending (see :meth:`_check`)."""
        self._provisional = PROVISIONAL_POSITIONS
        """The last provisional position given (see :class:`CachedStream`)."""

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
        self._report(self._commit([(None, _EngineEvent(e)) for e in events]))
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
            if outcome.line is None and outcome.event_id in self._engine_ids:
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
        for new in batch.events:
            self._evict(new.customer_id)
            self._unsettled.pop(new.event_id.int, None)
            if new.refers_to and self.referrals is not None:
                self.referrals.forget([new.refers_to])
        for customer in batch.read_versions:
            self._evict(customer)
        if self.referrals is not None:
            self.referrals.forget(batch.read_referrals)

    def _evict(self, customer_id: str) -> None:
        stream = self._streams.pop(customer_id, None)
        if stream is not None:
            self._cached_events -= len(stream.history)
        self._ring.forget(customer_id)

    def _trim(self, batch: AppendBatch) -> None:
        """Keep the cache under its bound, sparing the streams of ``batch`` (about to be appended)."""
        if self._cached_events <= MAX_CACHED_EVENTS:
            return
        keep = {e.customer_id for e in batch.events} | set(batch.read_versions)
        for customer_id in list(self._streams):
            if self._cached_events <= MAX_CACHED_EVENTS // 2:
                break
            if customer_id not in keep:
                self._evict(customer_id)
        if self.referrals is not None:
            self.referrals.trim(set(self._streams) | set(batch.read_referrals))

    def _applied(self, checked: CheckedBatch, positions: list[int]) -> list[Outcome]:
        """The batch is stored: its events are no longer unsettled; report each outcome with its position."""
        unsettled = self._unsettled
        for new in checked.batch.events:
            unsettled.pop(new.event_id.int, None)
        return checked.applied(positions)

    def _check(self, items: list[tuple[int | None, Any]], assume_new: bool = False) -> CheckedBatch:
        """Decide each event of a batch against the streams as they will be.

        With ``assume_new`` the event-id index is not consulted: a duplicate of
        a stored event then fails the append on the index's unique key, and the
        batch is redone through :meth:`_commit`, which does consult it. Bulk
        input rarely repeats itself, so this saves a round trip per batch.
        """
        now = self.clock()
        latest = now + FUTURE_TOLERANCE
        outcomes: list[Outcome | None] = [None] * len(items)
        pending: list[tuple[int, PendingEvent]] = []
        for index, (line, raw) in enumerate(items):
            try:
                pending.append((index, self._parse(line, raw, latest)))
            except RejectedEvent as exc:
                outcomes[index] = Outcome(line, "rejected", _claimed(raw), error=str(exc))
        stored = {} if assume_new else self.store.lookup_events([p.event_id for _, p in pending if p.sent_id])
        self._drop_stale(stored.values())
        self._load({p.content["customer_id"] for _, p in pending} | {e.customer_id for e in stored.values()})
        if self.referrals is not None:
            self._load_referrals(pending)
        checked = CheckedBatch(outcomes, [], [], AppendBatch(), iso(now))
        refused: list[tuple[int, PendingEvent]] = []
        for index, p in pending:
            try:
                outcomes[index] = self._accept(p, stored, checked, now, latest, index)
            except RejectedEvent as exc:
                outcomes[index] = Outcome(p.line, "rejected", p.sent_id, p.content["customer_id"], error=str(exc))
                if assume_new and p.sent_id:
                    refused.append((index, p))
        if refused:
            self._recheck_as_duplicates(refused, outcomes)
        reads = checked.batch.read_versions
        for new in checked.batch.events:  # a stream the batch appends to is checked by its primary key
            reads.pop(new.customer_id, None)
        return checked

    def _load_referrals(self, pending: list[tuple[int, PendingEvent]]) -> None:
        """Have at hand what qualification may read for this batch: one round trip for the whole batch."""
        assert self.referrals is not None
        referred = set()
        for _, p in pending:
            kind = p.content["type"]
            if kind == "customer.registered" or kind == "deposit.made":
                referred.add(p.content["customer_id"])
            elif kind == "referral.made":
                referred.add(p.content["data"]["referred_customer_id"])
        referrers = self.referrals.load(referred)
        self._load(referrers | {r for r in referred if self.referrals.count(r)})

    def _recheck_as_duplicates(self, refused: list[tuple[int, PendingEvent]], outcomes: list[Outcome | None]) -> None:
        """A refused event that is already stored is a duplicate (or a conflicting reuse of its id).

        Without the index lookup (``assume_new``) a re-sent event meets the
        rules first, which refuse e.g. a second registration; neither verdict
        changed any state, so the verdict can still be corrected.
        """
        stored = self.store.lookup_events([p.event_id for _, p in refused])
        self._drop_stale(stored.values())
        self._load({entry.customer_id for entry in stored.values()})
        for index, p in refused:
            entry = stored.get(p.event_id)
            if entry is None:
                continue
            previous = self._streams[entry.customer_id].history[entry.version - 1].envelope()
            try:
                outcomes[index] = self._duplicate(p, previous)
            except RejectedEvent as exc:
                outcomes[index] = Outcome(p.line, "rejected", p.sent_id, p.content["customer_id"], error=str(exc))

    def _parse(self, line: int | None, raw: Any, latest: dt.datetime) -> PendingEvent:
        """Validate one input (unless a worker did); ``latest`` is the last ``occurred_at`` accepted."""
        if type(raw) is Prepared:
            event = raw
        elif isinstance(raw, Refused):
            raise RejectedEvent(raw.reason)
        elif isinstance(raw, Exception):
            raise RejectedEvent(str(raw))
        else:
            event = prepare(raw)
        event_type = event.content["type"]
        if isinstance(raw, _EngineEvent):
            self._engine_ids.add(event.event_id)
        elif event_type in ENGINE_ONLY_TYPES:
            raise RejectedEvent(f"{event_type} is written by the engine only")
        if event.occurred_at > latest:
            raise RejectedEvent(
                f"occurred_at {event.occurred_at.isoformat()} is more than "
                f"{FUTURE_TOLERANCE} after the time of recording"
            )
        return PendingEvent(line, event.content, event.event_id, event.sent_id, event.occurred_at)

    def _drop_stale(self, entries: Iterable[Any]) -> None:
        """Forget cached streams shorter than a stored event proves them to be (another writer appended)."""
        for entry in entries:
            cached = self._streams.get(entry.customer_id)
            if cached is not None and len(cached.history) < entry.version:
                self._evict(entry.customer_id)

    def _load(self, customer_ids: set[str]) -> None:
        missing = [c for c in customer_ids if c not in self._streams]
        if not missing:
            return
        rows = self.store.read_streams(missing)
        keys = self._ring.keys(missing)
        for customer_id in missing:
            stream = rows[customer_id]
            history = self._ring.decode(stream, with_hash=False)
            self._cached_events += len(history)
            self._streams[customer_id] = CachedStream(
                history=history,
                version=history[-1].version if history else 0,
                head_hash=chain_hash(stream[-1].state) if stream else GENESIS_HASH,
                dek=keys[customer_id].dek,
                erased=keys[customer_id].erased,
                guard=self.rules(history),
            )

    def _accept(
        self,
        p: PendingEvent,
        stored: dict[uuid.UUID, Any],
        checked: CheckedBatch,
        now: dt.datetime,
        latest: dt.datetime,
        slot: int | None,
    ) -> Outcome | None:
        """``None`` if the event is accepted (added to the batch), its outcome if a duplicate; raises if rejected.

        ``slot``: the event's index among the batch's input events (``None`` for an engine-written one).
        """
        content = p.content
        customer_id = content["customer_id"]
        key = p.event_id.int
        previous = self._unsettled.get(key)
        if previous is None and stored:
            entry = stored.get(p.event_id)
            if entry is not None:
                previous = self._streams[entry.customer_id].history[entry.version - 1].envelope()
        if previous is not None:
            return self._duplicate(p, previous)
        stream = self._streams[customer_id]
        batch = checked.batch
        batch.read_versions.setdefault(customer_id, stream.version)
        event_type = content["type"]
        data = content["data"]
        version = stream.version + 1
        candidate = RecordedEvent(
            self._provisional + 1,
            customer_id,
            version,
            p.event_id,
            event_type,
            content["schema_version"],
            p.occurred_at,
            now,
            content["source"],
            content["actor"],
            data,
            stream.head_hash,
            "",
        )
        try:
            stream.guard.check(candidate)
        except UnknownTarget as exc:
            raise RejectedEvent(self._unknown_target(exc.target)) from None
        new_key = None
        if event_type == "customer.registered" and stream.dek is None:
            new_key = self.wrapper.new_data_key(customer_id)
        state, digest = encode(content, checked.recorded_at, stream.head_hash, stream.dek or (new_key and new_key[0]))
        self._provisional += 1
        if new_key is not None:
            stream.dek, batch.new_keys[customer_id] = new_key
        refers_to = None
        if event_type == "referral.made":
            refers_to = data["referred_customer_id"]
            checked.referrals[refers_to] = checked.referrals.get(refers_to, 0) + 1
        batch.events.append(NewEvent(customer_id, version, p.event_id, event_type, state, digest, refers_to))
        checked.lines.append(p.line)
        checked.slots.append(slot)
        subjects = self._subjects(candidate, stream) if self.referrals is not None else ()
        if event_type == "customer.erased":
            batch.destroy_keys.append(customer_id)
            stream.dek, stream.erased = None, True
        stream.history.append(candidate)
        self._cached_events += 1
        stream.guard.record(candidate)
        stream.version, stream.head_hash = version, digest
        self._unsettled[key] = content
        for referred in subjects:
            self._qualify(referred, candidate, checked, now, latest)
        return None

    def _subjects(self, event: RecordedEvent, stream: CachedStream) -> list[str]:
        """The referred customers whose qualification this event (not yet in ``stream``) may decide."""
        kind = event.type
        if kind == "deposit.made":
            first = stream.first_deposit
            if first is UNKNOWN:
                first = first_deposit(stream.history)
            stream.first_deposit = event.occurred_at if first is None else min(first, event.occurred_at)
            return [event.customer_id] if first is None or event.occurred_at <= first else []
        if kind == "customer.registered":
            return [event.customer_id]
        if kind == "referral.made":
            return [event.data["referred_customer_id"]]
        if kind == "correction.recorded":
            stream.first_deposit = UNKNOWN
            target_id = uuid.UUID(event.data["voids_event_id"])
            target = next((e for e in stream.history if e.event_id == target_id), None)
            if target is not None and target.type == "referral.made":
                return [target.data["referred_customer_id"]]
            if target is not None and target.type in ("customer.registered", "deposit.made"):
                return [target.customer_id]
        return []

    def _qualify(
        self, referred: str, trigger: RecordedEvent, checked: CheckedBatch, now: dt.datetime, latest: dt.datetime
    ) -> None:
        """Decide R's qualification after ``trigger``; append it right behind its trigger if it now holds."""
        watch = self.referrals
        assert watch is not None
        if not watch.known(referred):
            self._load(watch.load([referred]) | {referred})
        if trigger.type == "referral.made":
            watch.referred(trigger)
        if watch.decided(referred):
            return
        batch = checked.batch
        batch.read_referrals.setdefault(referred, watch.count(referred) - checked.referrals.get(referred, 0))
        readers = watch.referrers_of(referred) | {referred}
        self._load(readers)
        for customer in readers:
            batch.read_versions.setdefault(customer, self._streams[customer].version)
        decision = watch.decide(referred, lambda c: self._streams[c].history)
        if decision is None:
            return
        p = self._parse(None, _EngineEvent(decision.event()), latest)
        try:
            self._accept(p, {}, checked, now, latest, None)
        except RejectedEvent as exc:
            log.warning("qualification of the referral of %s not stored: %s", referred, exc)
            return
        watch.settled(referred)

    def _unknown_target(self, target: Any) -> str:
        unsettled = self._unsettled.get(target.int)
        entry = self.store.lookup_events([target]).get(target)
        owner = unsettled["customer_id"] if unsettled else entry.customer_id if entry else None
        if owner is not None:
            return f"correction names event {target} of another customer ({owner})"
        return f"correction names an unknown event {target}"

    def _duplicate(self, p: PendingEvent, previous: dict[str, Any]) -> Outcome:
        erased = self._streams.get(previous["customer_id"], None)
        drop_pii = bool(erased and erased.erased)
        if comparable(previous, drop_pii) != comparable(p.content, drop_pii):
            raise RejectedEvent(f"event_id {p.event_id} was already used for different content")
        return Outcome(p.line, "duplicate", p.event_id, p.content["customer_id"])


class _EngineEvent(dict):
    """An event the engine writes itself (e.g. ``referral.qualified``): exempt from the engine-only check."""


def _back_off(attempt: int) -> None:
    """Random exponential back-off, so that writers that keep colliding drift apart."""
    time.sleep(random.uniform(0, 0.005 * 2**attempt))


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _claimed(raw: Any) -> uuid.UUID | None:
    """The event id a rejected input claimed (a worker-validated event's is the one it sent)."""
    if type(raw) is Prepared:
        return raw.sent_id
    if isinstance(raw, Refused):
        return raw.claimed_id
    return claimed_id(raw)
