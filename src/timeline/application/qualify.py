"""Referral qualification decided again from what is stored (POLICY §5): ``timeline requalify``.

Ingestion decides each qualification in place (:mod:`timeline.application.referral_watch`);
this repair tool asks the same rule about every referred customer, from the
store alone, and lists the qualifications that are missing (e.g. in a store
written by a version that decided them after the batch). Their event ids are
derived from R, so appending one that is already stored is a duplicate.
Each is decided under the policy version in force at R's first deposit, as
the store's policy stream holds it now (POLICY §9).
"""

from __future__ import annotations

from typing import Any

from timeline.application.codec import decode
from timeline.application.policy_store import PolicyStream
from timeline.application.ports import EventStore
from timeline.domain.policy import Policy
from timeline.projections.counted import counted
from timeline.projections.referrals import decide, qualification_id


class Qualifier:
    """Decides, from what is stored now, which referrals of some customers qualify.

    It reads no personal data: events are decoded without keys, and a
    referrer is erased when their stream holds the (final) erasure, stored in
    the transaction that destroyed their key.
    """

    def __init__(self, store: EventStore, policy: Policy) -> None:
        self.store = store
        self.stream = PolicyStream(store, policy)
        self._qualified: set[str] = set()
        """Referred customers whose qualification was found stored: final and immutable, so never asked again."""

    def qualifications(self, referred_ids: set[str]) -> list[dict[str, Any]]:
        """``referral.qualified`` events to append (none already stored)."""
        referred_ids = referred_ids - self._qualified
        if not referred_ids:
            return []
        referrals = self.store.referrals_naming(referred_ids)
        if not referrals:
            return []
        stored = self.store.lookup_events([qualification_id(r) for r in referrals])
        self._qualified.update(r for r in referrals if qualification_id(r) in stored)
        todo = {r: entries for r, entries in referrals.items() if r not in self._qualified}
        if not todo:
            return []
        referrers = {entry.customer_id for entries in todo.values() for entry in entries}
        rows = self.store.read_streams(set(todo) | referrers)
        histories = {
            customer: [decode(r, None, False, with_hash=False) for r in stream] for customer, stream in rows.items()
        }
        erased = {c for c in referrers if any(e.type == "customer.erased" for e in histories[c])}
        views = {customer: counted(history) for customer, history in histories.items()}
        versions = self.stream.timeline()
        events = []
        for referred, entries in sorted(todo.items()):
            ids = {entry.event_id for entry in entries}
            named = [e for c in {entry.customer_id for entry in entries} for e in views[c].events if e.event_id in ids]
            decision = decide(referred, named, erased, views[referred].events, versions)
            if decision is not None:
                events.append(decision.event())
        return events
