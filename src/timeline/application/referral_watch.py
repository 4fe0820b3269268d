"""Referral qualification decided inside ingestion, at the event that makes it hold (POLICY §5).

The ingestor asks, after each event it accepts, which referred customers'
qualification that event may decide; for each, this watch gathers the
referrals naming them (the store's referral index, plus what this process
accepted since), and the rule decides from the streams as the ingestor
holds them — the stored history with the input's earlier events applied. A
qualification that holds is appended right after its trigger, in the same
transaction, so batch size, splits of the input and crashes cannot change
it. What a decision read (the streams, and how many referrals name R) goes
into the batch's read set, which the append checks under the write lock.

Only events that can change the decision are triggers: R's registration, a
deposit of R at or before R's first deposit (a later one cannot change the
deposits at that first instant), a referral naming R, and a correction
voiding one of these.

The rule is asked under the policy version in force at R's first deposit,
as known when the batch is decided: the ingest's versions, the same the
acceptance rules use, read once before each batch (a watch on its own reads
the store's policy stream whenever it loads referrals), so a version
published while an ingest runs decides from its next batch on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from uuid import UUID

from timeline.application.policy_store import PolicyStream
from timeline.application.ports import EventStore
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.projections.counted import counted
from timeline.projections.referrals import Qualification, decide, qualification_id

Stream = Callable[[str], list[RecordedEvent]]
"""A customer's history as the ingestor holds it (loaded on demand)."""


def first_deposit(history: Iterable[RecordedEvent]) -> dt.datetime | None:
    """The instant of the first counted deposit of a stream, if any."""
    deposits = [e.occurred_at for e in counted(history).events if e.type == "deposit.made"]
    return min(deposits) if deposits else None


class ReferralWatch:
    """Which referrals name whom, and which referred customers are decided, as this process knows it."""

    def __init__(self, store: EventStore, policy: Policy, versions: Callable[[], PolicyTimeline] | None = None) -> None:
        self.store = store
        self._in_force = versions
        """The ingest's versions, read once per batch for every rule; None: this watch reads the stream itself."""
        self.stream = PolicyStream(store, policy)
        self.versions = versions() if versions else self.stream.timeline()
        """The policy versions decisions are taken under: the store's, as last read."""
        self._referrals: dict[str, list[tuple[str, UUID]]] = {}
        """Referred customer → (referrer, event id) of every ``referral.made`` naming them, stored or accepted."""
        self._qualified: set[str] = set()
        """Referred customers whose qualification is stored or accepted: final, never decided again."""

    def load(self, referred_ids: Iterable[str]) -> set[str]:
        """Fetch what the store knows of these referred customers; return the referrers to have at hand.

        The policy versions are taken again here, before each batch is decided.
        """
        self.versions = self._in_force() if self._in_force else self.stream.timeline()
        wanted = [r for r in dict.fromkeys(referred_ids) if r not in self._referrals and r not in self._qualified]
        referrers: set[str] = set()
        if not wanted:
            return referrers
        found = self.store.referrals_naming(wanted)
        for referred in wanted:
            self._referrals[referred] = [(e.customer_id, e.event_id) for e in found.get(referred, [])]
        named = [r for r in wanted if self._referrals[r]]
        if named:
            stored = self.store.lookup_events([qualification_id(r) for r in named])
            for referred in named:
                if qualification_id(referred) in stored:
                    self.settled(referred)
                else:
                    referrers.update(c for c, _ in self._referrals[referred])
        return referrers

    def referrers_of(self, referred: str) -> set[str]:
        return {c for c, _ in self._referrals.get(referred, ())}

    def known(self, referred: str) -> bool:
        return referred in self._qualified or referred in self._referrals

    def decided(self, referred: str) -> bool:
        return referred in self._qualified

    def count(self, referred: str) -> int:
        """How many referrals naming R this process knows (stored, or accepted earlier)."""
        return len(self._referrals.get(referred, ()))

    def referred(self, event: RecordedEvent) -> None:
        """An accepted ``referral.made``: count it for its referred customer, if that one is watched."""
        known = self._referrals.get(event.data["referred_customer_id"])
        if known is not None:
            known.append((event.customer_id, event.event_id))

    def settled(self, referred: str) -> None:
        """R's qualification is stored or accepted: nothing about R is needed any more."""
        self._qualified.add(referred)
        self._referrals.pop(referred, None)

    def forget(self, referred_ids: Iterable[str]) -> None:
        """Drop what may be stale (another writer moved it, or a batch was not stored)."""
        for referred in referred_ids:
            self._referrals.pop(referred, None)
            self._qualified.discard(referred)

    def trim(self, keep: set[str]) -> None:
        """Bound memory: keep only the referred customers named in ``keep`` (the rest reload on demand)."""
        self._referrals = {r: v for r, v in self._referrals.items() if r in keep}

    def decide(self, referred: str, stream: Stream) -> Qualification | None:
        """The qualification of R that holds on the streams as they stand, if any."""
        entries = self._referrals.get(referred)
        if not entries:
            return None
        ids = {event_id for _, event_id in entries}
        referrals: list[RecordedEvent] = []
        erased: set[str] = set()
        for referrer in {c for c, _ in entries}:
            history = stream(referrer)
            referrals.extend(e for e in counted(history).events if e.event_id in ids)
            if any(e.type == "customer.erased" for e in history):
                erased.add(referrer)
        return decide(referred, referrals, erased, counted(stream(referred)).events, self.versions)
