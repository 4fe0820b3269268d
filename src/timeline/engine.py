"""Wiring: a store, the keys, the policy and the rules, assembled from configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from projections.acceptance import Guard
from projections.policy import Policy, load_policy
from timeline.crypto import KeyWrapper, load_kek
from timeline.ingest import Clock, Ingestor, Rules, utcnow
from timeline.keyring import KeyRing
from timeline.qualify import Qualifier, referred_customers
from timeline.recorded import RecordedEvent
from timeline.store import open_store, resolve_url
from timeline.store.port import EventStore


def acceptance_rules(policy: Policy) -> Rules:
    """All of RULES §2 that depends on the customer's stream: identity and state."""

    def guard(history: list[RecordedEvent]) -> Guard:
        return Guard(policy, history)

    return guard


@dataclass
class Engine:
    store: EventStore
    wrapper: KeyWrapper
    policy: Policy = field(default_factory=load_policy)

    def ingestor(self, clock: Clock = utcnow, batch_size: int = 1000) -> Ingestor:
        qualifier = Qualifier(self.store, self.policy)

        def qualify(stored: list[RecordedEvent], targets: dict) -> list[dict]:
            return qualifier.qualifications(referred_customers(stored, targets))

        return Ingestor(
            self.store,
            self.wrapper,
            acceptance_rules(self.policy),
            clock=clock,
            batch_size=batch_size,
            qualify=qualify,
        )

    def requalify(self, clock: Clock = utcnow) -> list:
        """Decide every referral again from what is stored: appends qualifications a crash left undone."""
        customers = self.store.customer_ids()
        events = Qualifier(self.store, self.policy).qualifications(set(customers))
        return self.ingestor(clock=clock).append_engine_events(events) if events else []

    def keyring(self) -> KeyRing:
        return KeyRing(self.store, self.wrapper)

    def close(self) -> None:
        self.store.close()


def open_engine(
    db: str | None = None, kek: bytes | None = None, policy: str | None = None, keys: bool = True
) -> Engine:
    """The engine on a store. ``keys=False``: the command never decrypts (state, explain), so no KEK is needed.

    Without ``TIMELINE_KEK`` a key file is generated for the embedded SQLite
    store only; on PostgreSQL a missing KEK is an error before anything is done.
    """
    chosen = load_policy(policy) if policy else load_policy()
    url = resolve_url(db)
    if kek is None:
        load = partial(load_kek, create=url.startswith("sqlite:"))
        wrapper = KeyWrapper(load() if keys else load)
    else:
        wrapper = KeyWrapper(kek)
    return Engine(open_store(url), wrapper, chosen)
