"""Deciding a batch: each event against its stream as it will be, qualifications in place.

Every event of a batch is validated (unless a worker did), looked up among
stored and unsettled events (a duplicate, or a conflicting reuse of an id),
then checked by its stream's guard with the batch's earlier events applied.
What each verdict read goes into the batch's read set. A referral whose
qualification now holds gets its ``referral.qualified`` right behind the
event that made it hold (:mod:`timeline.application.referral_watch`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from timeline.application.batch import UNKNOWN, CachedStream, CheckedBatch, Outcome, PendingEvent
from timeline.application.codec import comparable, encode
from timeline.application.ingest.cache import StreamCache
from timeline.application.ingest.versions import VersionsInForce
from timeline.application.ports import AppendBatch, EventStore, IndexEntry, KeyWrapping, NewEvent
from timeline.application.prepare import Prepared, Refused, claimed_id, prepare
from timeline.application.referral_watch import ReferralWatch, first_deposit
from timeline.domain.errors import RejectedEvent, UnknownTarget
from timeline.domain.events import ENGINE_ONLY_TYPES
from timeline.domain.recorded import RecordedEvent, iso

log = logging.getLogger(__name__)

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
PROVISIONAL_POSITIONS = 1 << 62
"""Above every position a store gives: where provisional positions start (see :class:`CachedStream`)."""


class EngineEvent(dict):
    """An event the engine writes itself (e.g. ``referral.qualified``): exempt from the engine-only check."""


class BatchChecker:
    """Decides batches for one ingestor; remembers what it accepted until it is known stored."""

    def __init__(
        self,
        store: EventStore,
        wrapper: KeyWrapping,
        cache: StreamCache,
        referrals: ReferralWatch | None,
        versions: VersionsInForce | None = None,
    ) -> None:
        """``versions``: the store's policy versions, read again before each batch (a publish since is seen)."""
        self.store = store
        self.wrapper = wrapper
        self.cache = cache
        self.referrals = referrals
        self.versions = versions
        self.engine_ids: set[uuid.UUID] = set()
        """Ids of the events the engine wrote itself (qualifications)."""
        self.unsettled: dict[int, dict[str, Any]] = {}
        """Content of accepted events not yet known to be stored, by event id as an integer (duplicates across
        batches; an integer hashes in C, a UUID in Python)."""
        self._provisional = PROVISIONAL_POSITIONS

    def check(self, items: list[tuple[int | None, Any]], now: dt.datetime, assume_new: bool = False) -> CheckedBatch:
        """Decide each event of a batch against the streams as they will be.

        With ``assume_new`` the event-id index is not consulted: a duplicate of
        a stored event then fails the append on the index's unique key, and the
        batch is redone with the index consulted. Bulk input rarely repeats
        itself, so this saves a round trip per batch.
        """
        latest = now + FUTURE_TOLERANCE
        if self.versions is not None:
            self.versions.refresh(now)
        outcomes: list[Outcome | None] = [None] * len(items)
        pending: list[tuple[int, PendingEvent]] = []
        for index, (line, raw) in enumerate(items):
            try:
                pending.append((index, self.parse(line, raw, latest)))
            except RejectedEvent as exc:
                outcomes[index] = Outcome(line, "rejected", _claimed(raw), error=str(exc))
        stored = {} if assume_new else self.store.lookup_events([p.event_id for _, p in pending if p.sent_id])
        self.cache.drop_stale(stored.values())
        self.cache.load({p.content["customer_id"] for _, p in pending} | {e.customer_id for e in stored.values()})
        self.cache.prefetch(
            [(p.content["customer_id"], target) for _, p in pending if (target := _target(p.content)) is not None]
        )
        if self.referrals is not None:
            self._load_referrals(pending)
        envelopes = self.cache.stored_envelopes(stored.values()) if stored else {}
        checked = CheckedBatch(outcomes, [], [], AppendBatch(), iso(now))
        refused: list[tuple[int, PendingEvent]] = []
        for index, p in pending:
            try:
                outcomes[index] = self.accept(p, envelopes, checked, now, latest, index)
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
        self.cache.load(referrers | {r for r in referred if self.referrals.count(r)})

    def _recheck_as_duplicates(self, refused: list[tuple[int, PendingEvent]], outcomes: list[Outcome | None]) -> None:
        """A refused event that is already stored is a duplicate (or a conflicting reuse of its id).

        Without the index lookup (``assume_new``) a re-sent event meets the
        rules first, which refuse e.g. a second registration; neither verdict
        changed any state, so the verdict can still be corrected.
        """
        stored = self.store.lookup_events([p.event_id for _, p in refused])
        self.cache.drop_stale(stored.values())
        self.cache.load({entry.customer_id for entry in stored.values()})
        envelopes = self.cache.stored_envelopes(stored.values())
        for index, p in refused:
            previous = envelopes.get(p.event_id)
            if previous is None:
                continue
            try:
                outcomes[index] = self._duplicate(p, previous)
            except RejectedEvent as exc:
                outcomes[index] = Outcome(p.line, "rejected", p.sent_id, p.content["customer_id"], error=str(exc))

    def parse(self, line: int | None, raw: Any, latest: dt.datetime) -> PendingEvent:
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
        if isinstance(raw, EngineEvent):
            self.engine_ids.add(event.event_id)
        elif event_type in ENGINE_ONLY_TYPES:
            raise RejectedEvent(f"{event_type} is written by the engine only")
        if event.occurred_at > latest:
            raise RejectedEvent(
                f"occurred_at {event.occurred_at.isoformat()} is more than "
                f"{FUTURE_TOLERANCE} after the time of recording"
            )
        return PendingEvent(line, event.content, event.event_id, event.sent_id, event.occurred_at)

    def accept(
        self,
        p: PendingEvent,
        envelopes: dict[uuid.UUID, dict[str, Any]],
        checked: CheckedBatch,
        now: dt.datetime,
        latest: dt.datetime,
        slot: int | None,
    ) -> Outcome | None:
        """``None`` if the event is accepted (added to the batch), its outcome if a duplicate; raises if rejected.

        ``envelopes``: the stored events of the batch's ids; ``slot``: the event's index among the batch's
        input events (``None`` for an engine-written one).
        """
        content = p.content
        customer_id = content["customer_id"]
        key = p.event_id.int
        previous = self.unsettled.get(key)
        if previous is None and envelopes:
            previous = envelopes.get(p.event_id)
        if previous is not None:
            return self._duplicate(p, previous)
        stream = self.cache[customer_id]
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
        self.cache.accepted(stream, candidate)
        stream.guard.record(candidate)
        stream.version, stream.head_hash = version, digest
        self.unsettled[key] = content
        for referred in subjects:
            self._qualify(referred, candidate, checked, now, latest)
        return None

    def _subjects(self, event: RecordedEvent, stream: CachedStream) -> list[str]:
        """The referred customers whose qualification this event (not yet in ``stream``) may decide."""
        kind = event.type
        if kind == "deposit.made":
            first = stream.first_deposit
            if first is UNKNOWN:
                first = first_deposit(self.cache.history(event.customer_id))
            stream.first_deposit = event.occurred_at if first is None else min(first, event.occurred_at)
            return [event.customer_id] if first is None or event.occurred_at <= first else []
        if kind == "customer.registered":
            return [event.customer_id]
        if kind == "referral.made":
            return [event.data["referred_customer_id"]]
        if kind == "correction.recorded":
            target = self.cache.event(event.customer_id, uuid.UUID(event.data["voids_event_id"]))
            first = stream.first_deposit
            if target is None or (
                target.type == "deposit.made" and (first is None or first is UNKNOWN or target.occurred_at <= first)
            ):
                stream.first_deposit = UNKNOWN  # the first counted deposit may have been voided
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
            self.cache.load(watch.load([referred]) | {referred})
        if trigger.type == "referral.made":
            watch.referred(trigger)
        if watch.decided(referred):
            return
        batch = checked.batch
        batch.read_referrals.setdefault(referred, watch.count(referred) - checked.referrals.get(referred, 0))
        readers = watch.referrers_of(referred) | {referred}
        self.cache.load(readers)
        for customer in readers:
            batch.read_versions.setdefault(customer, self.cache[customer].version)
        decision = watch.decide(referred, self.cache.history)
        if decision is None:
            return
        p = self.parse(None, EngineEvent(decision.event()), latest)
        try:
            self.accept(p, {}, checked, now, latest, None)
        except RejectedEvent as exc:
            log.warning("qualification of the referral of %s not stored: %s", referred, exc)
            return
        watch.settled(referred)

    def _unknown_target(self, target: Any) -> str:
        unsettled = self.unsettled.get(target.int)
        entry: IndexEntry | None = self.store.lookup_events([target]).get(target)
        owner = unsettled["customer_id"] if unsettled else entry.customer_id if entry else None
        if owner is not None:
            return f"correction names event {target} of another customer ({owner})"
        return f"correction names an unknown event {target}"

    def _duplicate(self, p: PendingEvent, previous: dict[str, Any]) -> Outcome:
        stream = self.cache.get(previous["customer_id"])
        drop_pii = bool(stream and stream.erased)
        if comparable(previous, drop_pii) != comparable(p.content, drop_pii):
            raise RejectedEvent(f"event_id {p.event_id} was already used for different content")
        return Outcome(p.line, "duplicate", p.event_id, p.content["customer_id"])


def _target(content: dict[str, Any]) -> uuid.UUID | None:
    """The event a correction voids (an id that is not one gets its reject from the rules)."""
    if content["type"] != "correction.recorded":
        return None
    try:
        return uuid.UUID(content["data"]["voids_event_id"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _claimed(raw: Any) -> uuid.UUID | None:
    """The event id a rejected input claimed (a worker-validated event's is the one it sent)."""
    if type(raw) is Prepared:
        return raw.sent_id
    if isinstance(raw, Refused):
        return raw.claimed_id
    return claimed_id(raw)
