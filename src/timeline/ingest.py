"""Ingestion: every event is accepted, a duplicate, or rejected with a reason.

The shell around the pure acceptance rules. Events are taken in batches; for
each batch the customers' streams are loaded (and cached across batches),
every event is checked against its customer's history as it stands with the
batch's earlier events applied, and all accepted events are appended in one
transaction. A concurrent writer that took a stream version first makes the
append fail whole; the batch is then re-checked against fresh streams and
retried, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal, NamedTuple, Protocol

from timeline.codec import GENESIS_HASH, chain_hash, comparable, encode
from timeline.crypto import KeyWrapper
from timeline.errors import ConcurrencyConflict, RejectedEvent, UnknownTarget
from timeline.events import ENGINE_ONLY_TYPES
from timeline.jsonl import JsonLines
from timeline.keyring import KeyRing
from timeline.prepare import Prepared, Refused, claimed_id, prepare, prepared_lines
from timeline.recorded import RecordedEvent, iso
from timeline.store.port import AppendBatch, EventStore, NewEvent

log = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]


class StreamGuard(Protocol):
    """The acceptance rules of one customer's stream (RULES §2), kept up to date as events are stored."""

    def check(self, event: RecordedEvent) -> None:
        """Raise :class:`RejectedEvent` if ``event`` may not follow the stream."""

    def record(self, event: RecordedEvent) -> None:
        """Take an accepted event (already appended to the stream's history) into account."""


Rules = Callable[[list[RecordedEvent]], StreamGuard]
"""Builds the guard of a stream from its history list (which the ingestor keeps growing)."""
Qualify = Callable[[list[RecordedEvent], dict[uuid.UUID, RecordedEvent]], list[dict[str, Any]]]
"""Engine-written events that committed events call for: referral qualifications (RULES §5)."""
Clock = Callable[[], dt.datetime]

MAX_RETRIES = 12
CAREFUL_BATCHES_AFTER_CONFLICT = 20
"""After an optimistic batch turned out to hold stored events, look ids up for this many batches."""
PROVISIONAL_POSITIONS = 1 << 62
"""Above every position a store gives: where provisional positions start (see :class:`_Stream`)."""
FUTURE_TOLERANCE = dt.timedelta(minutes=5)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
class _Stream:
    """A customer's stream as this process knows it, plus its data key.

    Events this process appended keep the provisional position they were
    checked with: a stand-in that orders them after every event read from the
    store and among themselves in append order, which is all the rules and
    projections read of a position. The store's positions are reported in
    each :class:`Outcome`. Cached events carry no chain hash (the rules never
    read it); ``head_hash`` is the stream's.
    """

    history: list[RecordedEvent]
    version: int
    head_hash: str
    dek: bytes | None
    erased: bool
    guard: StreamGuard


@dataclass(slots=True)
class _Checked:
    """A checked batch: what to append, and the outcomes to report once it is appended."""

    outcomes: list[Outcome | None]
    """``None`` for an accepted event: its outcome needs the position the append gives it."""
    lines: list[int | None]
    """The input line of each event of ``batch``, in order."""
    batch: AppendBatch
    recorded: list[RecordedEvent] = field(default_factory=list)
    """Each event of ``batch`` as the rules saw it, in order."""
    voided: dict[uuid.UUID, RecordedEvent] = field(default_factory=dict)
    """The events that corrections in ``batch`` void."""

    def applied(self, positions: list[int]) -> list[Outcome]:
        """The outcomes, accepted events with their positions."""
        appended = iter(zip(self.lines, self.batch.events, positions, strict=True))
        result = []
        for outcome in self.outcomes:
            if outcome is None:
                line, new, position = next(appended)
                outcome = Outcome(line, "accepted", new.event_id, new.customer_id, position)
            result.append(outcome)
        return result

    def refused(self, error: str) -> list[Outcome]:
        """The outcomes, accepted events reported as rejected with ``error`` (nothing was stored)."""
        appended = iter(zip(self.lines, self.batch.events, strict=True))
        result = []
        for outcome in self.outcomes:
            if outcome is None:
                line, new = next(appended)
                outcome = Outcome(line, "rejected", new.event_id, new.customer_id, error=error)
            result.append(outcome)
        return result


@dataclass(slots=True)
class _Inflight:
    """A checked batch whose append, then the decisions it calls for, run in the writer thread."""

    items: list[tuple[int | None, Any]]
    checked: _Checked
    future: Future[list[int]]
    consequences: Future[list[tuple[int | None, Any]]]


class _Pending(NamedTuple):
    line: int | None
    content: dict[str, Any]
    event_id: uuid.UUID
    sent_id: uuid.UUID | None
    """The sender's event id; an engine-assigned one means nothing in a reject."""
    occurred_at: dt.datetime


class Ingestor:
    """Appends events to a store under the acceptance rules."""

    def __init__(
        self,
        store: EventStore,
        wrapper: KeyWrapper,
        rules: Rules,
        clock: Clock = utcnow,
        batch_size: int = 1000,
        future_tolerance: dt.timedelta = FUTURE_TOLERANCE,
        qualify: Qualify | None = None,
        validation_worker: bool = True,
    ) -> None:
        """``validation_worker``: validate large :class:`~timeline.jsonl.JsonLines` inputs in a worker process."""
        self.store = store
        self.wrapper = wrapper
        self.rules = rules
        self.clock = clock
        self.batch_size = batch_size
        self.future_tolerance = future_tolerance
        self.qualify = qualify
        self.validation_worker = validation_worker
        self.engine_events: list[Outcome] = []
        """Outcomes of the events the engine wrote itself (qualifications)."""
        self._engine_ids: set[uuid.UUID] = set()
        self._ring = KeyRing(store, wrapper)
        self._streams: dict[str, _Stream] = {}
        self._unsettled: dict[int, dict[str, Any]] = {}
        """Content of accepted events not yet known to be stored, by event id as an integer (duplicates across
        batches; an integer hashes in C, a UUID in Python)."""
        self._careful_batches = 0
        """How many more batches consult the event-id index before appending (see :meth:`_check`)."""
        self._provisional = PROVISIONAL_POSITIONS
        """The last provisional position given (see :class:`_Stream`)."""

    def ingest(self, items: Iterable[tuple[int | None, Any]], atomic: bool = False) -> Iterator[Outcome]:
        """Ingest ``(line, raw)`` pairs; ``raw`` is a decoded JSON value or an exception.

        Batches are pipelined: while one is appended by a writer thread (the
        database works on another core), the next is checked against the
        streams as they will be. If the append in flight fails, both batches
        are redone one after the other against fresh streams. The writer
        thread also reads what a committed batch calls for (referral
        qualifications), so those round trips leave the checking thread alone.

        With ``atomic`` the whole input is one transaction: if any event is
        rejected, nothing is stored and accepted events are reported as rejected
        with the reason "atomic input had rejections".

        Lines from :func:`timeline.jsonl.read_lines` are validated by a worker
        process when there are many (:mod:`timeline.prepare`).
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
            inflight: _Inflight | None = None
            deferred: list[tuple[int | None, Any]] = []
            for chunk in _chunks(items, self.batch_size):
                work, deferred = deferred + chunk, []
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
                    else:
                        deferred = inflight.consequences.result()
                appended = writer.submit(self.store.append, checked.batch)
                inflight = _Inflight(work, checked, appended, writer.submit(self._consequences_of, appended, checked))
            if inflight is not None:
                try:
                    yield from self._report(self._settle(inflight))
                except ConcurrencyConflict:
                    yield from self._report(self._commit(inflight.items))
                else:
                    deferred += inflight.consequences.result()
            if deferred:
                yield from self._report(self._commit(deferred))

    def append_engine_events(self, events: list[dict[str, Any]]) -> list[Outcome]:
        """Store events the engine decided on (e.g. a qualification found by a repair run)."""
        before = len(self.engine_events)
        self._report(self._commit([(None, _EngineEvent(e)) for e in events]))
        return self.engine_events[before:]

    def ingest_one(self, raw: Any) -> Outcome:
        return next(iter(self._report(self._commit([(None, raw)]))))

    def _consequences(self, checked: _Checked) -> list[tuple[int | None, Any]]:
        """Engine-written events that a committed batch calls for (read fresh from the store).

        Reads nothing the checking thread changes, so the writer thread can run it.
        """
        if self.qualify is None or not checked.recorded:
            return []
        return [(None, _EngineEvent(e)) for e in self.qualify(checked.recorded, checked.voided)]

    def _consequences_of(self, appended: Future[list[int]], checked: _Checked) -> list[tuple[int | None, Any]]:
        """:meth:`_consequences` once ``appended`` (which the writer ran just before) succeeded."""
        return [] if appended.exception() is not None else self._consequences(checked)

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
            consequences = self._consequences(checked)
            yield from applied
            if consequences:
                yield from self._report(self._commit(consequences))
            return
        raise ConcurrencyConflict(f"gave up after {MAX_RETRIES} concurrent conflicts")

    def _commit(self, items: list[tuple[int | None, Any]]) -> list[Outcome]:
        """Check and append one batch now, retrying on concurrent appends; then its consequences."""
        for attempt in range(MAX_RETRIES):
            checked = self._check(items)
            try:
                applied = self._applied(checked, self._append(checked.batch))
            except ConcurrencyConflict:
                log.info("concurrent append; retrying batch (attempt %d)", attempt + 1)
                _back_off(attempt)
                continue
            consequences = self._consequences(checked)
            if consequences:
                applied += self._report(self._commit(consequences))
            return applied
        raise ConcurrencyConflict(f"gave up after {MAX_RETRIES} concurrent conflicts")

    def _append(self, batch: AppendBatch) -> list[int]:
        try:
            return self.store.append(batch)
        except BaseException:
            self._forget(batch)
            raise

    def _settle(self, inflight: _Inflight) -> list[Outcome]:
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
        """Drop the cached streams a failed batch touched: they may hold events never stored."""
        for new in batch.events:
            self._streams.pop(new.customer_id, None)
            self._ring.forget(new.customer_id)
            self._unsettled.pop(new.event_id.int, None)

    def _applied(self, checked: _Checked, positions: list[int]) -> list[Outcome]:
        """The batch is stored: its events are no longer unsettled; report each outcome with its position."""
        unsettled = self._unsettled
        for new in checked.batch.events:
            unsettled.pop(new.event_id.int, None)
        return checked.applied(positions)

    def _check(self, items: list[tuple[int | None, Any]], assume_new: bool = False) -> _Checked:
        """Decide each event of a batch against the streams as they will be.

        With ``assume_new`` the event-id index is not consulted: a duplicate of
        a stored event then fails the append on the index's unique key, and the
        batch is redone through :meth:`_commit`, which does consult it. Bulk
        input rarely repeats itself, so this saves a round trip per batch.
        """
        now = self.clock()
        latest = now + self.future_tolerance
        outcomes: list[Outcome | None] = [None] * len(items)
        pending: list[tuple[int, _Pending]] = []
        for index, (line, raw) in enumerate(items):
            try:
                pending.append((index, self._parse(line, raw, latest)))
            except RejectedEvent as exc:
                outcomes[index] = Outcome(line, "rejected", _claimed(raw), error=str(exc))
        stored = {} if assume_new else self.store.lookup_events([p.event_id for _, p in pending if p.sent_id])
        self._drop_stale(stored.values())
        self._load({p.content["customer_id"] for _, p in pending} | {e.customer_id for e in stored.values()})
        checked = _Checked(outcomes, [], AppendBatch())
        now_text = iso(now)
        refused: list[tuple[int, _Pending]] = []
        for index, p in pending:
            try:
                outcomes[index] = self._accept(p, stored, checked, now, now_text)
            except RejectedEvent as exc:
                outcomes[index] = Outcome(p.line, "rejected", p.sent_id, p.content["customer_id"], error=str(exc))
                if assume_new and p.sent_id:
                    refused.append((index, p))
        if refused:
            self._recheck_as_duplicates(refused, outcomes)
        return checked

    def _recheck_as_duplicates(self, refused: list[tuple[int, _Pending]], outcomes: list[Outcome | None]) -> None:
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

    def _parse(self, line: int | None, raw: Any, latest: dt.datetime) -> _Pending:
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
                f"{self.future_tolerance} after the time of recording"
            )
        return _Pending(line, event.content, event.event_id, event.sent_id, event.occurred_at)

    def _drop_stale(self, entries: Iterable[Any]) -> None:
        """Forget cached streams shorter than a stored event proves them to be (another writer appended)."""
        for entry in entries:
            cached = self._streams.get(entry.customer_id)
            if cached is not None and len(cached.history) < entry.version:
                del self._streams[entry.customer_id]
                self._ring.forget(entry.customer_id)

    def _load(self, customer_ids: set[str]) -> None:
        missing = [c for c in customer_ids if c not in self._streams]
        if not missing:
            return
        rows = self.store.read_streams(missing)
        keys = self._ring.keys(missing)
        for customer_id in missing:
            stream = rows[customer_id]
            history = self._ring.decode(stream, with_hash=False)
            self._streams[customer_id] = _Stream(
                history=history,
                version=history[-1].version if history else 0,
                head_hash=chain_hash(stream[-1].state) if stream else GENESIS_HASH,
                dek=keys[customer_id].dek,
                erased=keys[customer_id].erased,
                guard=self.rules(history),
            )

    def _accept(
        self, p: _Pending, stored: dict[uuid.UUID, Any], checked: _Checked, now: dt.datetime, now_text: str
    ) -> Outcome | None:
        """``None`` if the event is accepted (added to the batch), its outcome if a duplicate; raises if rejected."""
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
        self._provisional += 1
        batch = checked.batch
        if event_type == "customer.registered" and stream.dek is None:
            stream.dek, wrapped = self.wrapper.new_data_key(customer_id)
            batch.new_keys[customer_id] = wrapped
        state, digest = encode(content, now_text, stream.head_hash, stream.dek)
        refers_to = data["referred_customer_id"] if event_type == "referral.made" else None
        batch.events.append(NewEvent(customer_id, version, p.event_id, event_type, state, digest, refers_to))
        checked.lines.append(p.line)
        checked.recorded.append(candidate)
        if event_type == "correction.recorded":
            target_id = uuid.UUID(data["voids_event_id"])
            checked.voided.update((e.event_id, e) for e in stream.history if e.event_id == target_id)
        if event_type == "customer.erased":
            batch.destroy_keys.append(customer_id)
            stream.dek, stream.erased = None, True
        stream.history.append(candidate)
        stream.guard.record(candidate)
        stream.version, stream.head_hash = version, digest
        self._unsettled[key] = content
        return None

    def _unknown_target(self, target: Any) -> str:
        unsettled = self._unsettled.get(target.int)
        entry = self.store.lookup_events([target]).get(target)
        owner = unsettled["customer_id"] if unsettled else entry.customer_id if entry else None
        if owner is not None:
            return f"correction names event {target} of another customer ({owner})"
        return f"correction names an unknown event {target}"

    def _duplicate(self, p: _Pending, previous: dict[str, Any]) -> Outcome:
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
