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
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from timeline.codec import GENESIS_HASH, comparable, content_of, encode
from timeline.crypto import KeyWrapper
from timeline.errors import ConcurrencyConflict, RejectedEvent
from timeline.events import ENGINE_ONLY_TYPES, Envelope, parse_event
from timeline.keyring import KeyRing
from timeline.recorded import RecordedEvent
from timeline.store.port import AppendBatch, EventStore, NewEvent

log = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]
Rules = Callable[[Sequence[RecordedEvent], RecordedEvent], None]
Clock = Callable[[], dt.datetime]

MAX_RETRIES = 8
FUTURE_TOLERANCE = dt.timedelta(minutes=5)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one input event."""

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


@dataclass
class _Stream:
    """A customer's stream as this process knows it, plus its data key."""

    history: list[RecordedEvent]
    version: int
    head_hash: str
    dek: bytes | None
    erased: bool


@dataclass
class _Pending:
    line: int | None
    event: Envelope
    event_id: uuid.UUID
    content: dict[str, Any] = field(default_factory=dict)

    @property
    def sent_id(self) -> uuid.UUID | None:
        """The sender's event id; an engine-assigned one means nothing in a reject."""
        return self.event.event_id


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
    ) -> None:
        self.store = store
        self.wrapper = wrapper
        self.rules = rules
        self.clock = clock
        self.batch_size = batch_size
        self.future_tolerance = future_tolerance
        self._ring = KeyRing(store, wrapper)
        self._streams: dict[str, _Stream] = {}

    def ingest(self, items: Iterable[tuple[int | None, Any]], atomic: bool = False) -> Iterator[Outcome]:
        """Ingest ``(line, raw)`` pairs; ``raw`` is a decoded JSON value or an exception.

        With ``atomic`` the whole input is one transaction: if any event is
        rejected, nothing is stored and accepted events are reported as rejected
        with the reason "atomic input had rejections".
        """
        if atomic:
            yield from self._atomic(list(items))
            return
        batch: list[tuple[int | None, Any]] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield from self._commit(batch)
                batch = []
        if batch:
            yield from self._commit(batch)

    def ingest_one(self, raw: Any) -> Outcome:
        return next(iter(self._commit([(None, raw)])))

    def _atomic(self, items: list[tuple[int | None, Any]]) -> Iterator[Outcome]:
        for attempt in range(MAX_RETRIES):
            outcomes, batch = self._check(items)
            if any(o.status == "rejected" for o in outcomes):
                self._forget(batch)
                yield from (
                    o
                    if o.status != "accepted"
                    else dataclasses.replace(o, status="rejected", error="not stored: atomic input had rejections")
                    for o in outcomes
                )
                return
            try:
                yield from self._append(outcomes, batch)
                return
            except ConcurrencyConflict:
                self._forget(batch)
                log.info("concurrent append; retrying atomic input (attempt %d)", attempt + 1)
        raise ConcurrencyConflict(f"gave up after {MAX_RETRIES} concurrent conflicts")

    def _commit(self, items: list[tuple[int | None, Any]]) -> list[Outcome]:
        for attempt in range(MAX_RETRIES):
            outcomes, batch = self._check(items)
            try:
                return list(self._append(outcomes, batch))
            except ConcurrencyConflict:
                self._forget(batch)
                log.info("concurrent append; retrying batch (attempt %d)", attempt + 1)
        raise ConcurrencyConflict(f"gave up after {MAX_RETRIES} concurrent conflicts")

    def _forget(self, batch: AppendBatch) -> None:
        for customer_id in {e.customer_id for e in batch.events} | set(batch.destroy_keys):
            self._streams.pop(customer_id, None)
            self._ring.forget(customer_id)

    def _append(self, outcomes: list[Outcome], batch: AppendBatch) -> Iterator[Outcome]:
        positions = self.store.append(batch)
        by_event = {e.event_id: p for e, p in zip(batch.events, positions, strict=True)}
        for customer_id in {e.customer_id for e in batch.events}:
            stream = self._streams[customer_id]
            stream.history = [
                dataclasses.replace(r, position=by_event[r.event_id]) if r.event_id in by_event else r
                for r in stream.history
            ]
        for o in outcomes:
            yield dataclasses.replace(o, position=by_event.get(o.event_id)) if o.status == "accepted" else o

    def _check(self, items: list[tuple[int | None, Any]]) -> tuple[list[Outcome], AppendBatch]:
        now = self.clock()
        outcomes: list[Outcome | None] = [None] * len(items)
        pending: list[tuple[int, _Pending]] = []
        for index, (line, raw) in enumerate(items):
            try:
                pending.append((index, self._parse(line, raw, now)))
            except RejectedEvent as exc:
                event_id = _claimed_id(raw)
                outcomes[index] = Outcome(line, "rejected", event_id, error=str(exc))
        stored = self.store.lookup_events([p.event_id for _, p in pending])
        self._load({p.event.customer_id for _, p in pending} | {e.customer_id for e in stored.values()})
        batch = AppendBatch()
        seen: dict[uuid.UUID, dict[str, Any]] = {}
        provisional = 1 << 62
        for index, p in pending:
            provisional += 1
            try:
                outcomes[index] = self._accept(p, stored, seen, batch, now, provisional)
            except RejectedEvent as exc:
                outcomes[index] = Outcome(p.line, "rejected", p.sent_id, p.event.customer_id, error=str(exc))
        return [o for o in outcomes if o is not None], batch

    def _parse(self, line: int | None, raw: Any, now: dt.datetime) -> _Pending:
        if isinstance(raw, Exception):
            raise RejectedEvent(str(raw))
        event = parse_event(raw)
        if event.type in ENGINE_ONLY_TYPES:  # type: ignore[attr-defined]
            raise RejectedEvent(f"{event.type} is written by the engine only")  # type: ignore[attr-defined]
        if event.occurred_at > now + self.future_tolerance:
            raise RejectedEvent(
                f"occurred_at {event.occurred_at.isoformat()} is more than "
                f"{self.future_tolerance} after the time of recording"
            )
        event_id = event.event_id or uuid.uuid4()
        return _Pending(line, event, event_id, content_of(event, event_id))

    def _load(self, customer_ids: set[str]) -> None:
        missing = [c for c in customer_ids if c not in self._streams]
        if not missing:
            return
        rows = self.store.read_streams(missing)
        keys = self._ring.keys(missing)
        for customer_id in missing:
            history = self._ring.decode(rows[customer_id])
            self._streams[customer_id] = _Stream(
                history=history,
                version=history[-1].version if history else 0,
                head_hash=history[-1].hash if history else GENESIS_HASH,
                dek=keys[customer_id].dek,
                erased=keys[customer_id].erased,
            )

    def _accept(
        self,
        p: _Pending,
        stored: dict[uuid.UUID, Any],
        seen: dict[uuid.UUID, dict[str, Any]],
        batch: AppendBatch,
        now: dt.datetime,
        provisional: int,
    ) -> Outcome:
        customer_id = p.event.customer_id
        previous = seen.get(p.event_id)
        if previous is None and p.event_id in stored:
            entry = stored[p.event_id]
            previous = self._streams[entry.customer_id].history[entry.version - 1].envelope()
        if previous is not None:
            return self._duplicate(p, previous)
        stream = self._streams[customer_id]
        candidate = RecordedEvent(
            position=provisional,
            customer_id=customer_id,
            version=stream.version + 1,
            event_id=p.event_id,
            type=p.content["type"],
            schema_version=p.content["schema_version"],
            occurred_at=p.event.occurred_at,
            recorded_at=now,
            source=p.event.source,
            actor=p.event.actor,
            data=p.content["data"],
            prev_hash=stream.head_hash,
            hash="",
        )
        self.rules(stream.history, candidate)
        if candidate.type == "customer.registered" and stream.dek is None:
            stream.dek, wrapped = self.wrapper.new_data_key(customer_id)
            batch.new_keys[customer_id] = wrapped
        state, digest = encode(p.content, now, stream.head_hash, stream.dek)
        batch.events.append(NewEvent(customer_id, candidate.version, p.event_id, candidate.type, state, digest))
        if candidate.type == "customer.erased":
            batch.destroy_keys.append(customer_id)
            stream.dek, stream.erased = None, True
        stream.history.append(dataclasses.replace(candidate, hash=digest))
        stream.version, stream.head_hash = candidate.version, digest
        seen[p.event_id] = p.content
        return Outcome(p.line, "accepted", p.event_id, customer_id)

    def _duplicate(self, p: _Pending, previous: dict[str, Any]) -> Outcome:
        erased = self._streams.get(previous["customer_id"], None)
        drop_pii = bool(erased and erased.erased)
        if comparable(previous, drop_pii) != comparable(p.content, drop_pii):
            raise RejectedEvent(f"event_id {p.event_id} was already used for different content")
        return Outcome(p.line, "duplicate", p.event_id, p.event.customer_id)


def _claimed_id(raw: Any) -> uuid.UUID | None:
    if isinstance(raw, dict):
        try:
            return uuid.UUID(str(raw.get("event_id")))
        except ValueError:
            return None
    return None
