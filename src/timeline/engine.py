"""Wiring: a store, the keys, the policy and the rules, assembled from configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from timeline.application.ingest import Clock, Ingestor, Rules, VersionsInForce, utcnow
from timeline.application.keyring import KeyRing
from timeline.application.ports import EventStore
from timeline.application.qualify import Qualifier
from timeline.application.referral_watch import ReferralWatch
from timeline.crypto import KekSource, KeyWrapper, configured_kek, kek_for_store
from timeline.domain.errors import ConfigurationError
from timeline.domain.policy import Policy, load_policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.projections.acceptance import Guard, PastEvents
from timeline.store import StoreUrl, open_store

NO_KEK = KekSource()
"""No KEK configured: the embedded store's key file, or an error on PostgreSQL."""


def acceptance_rules(policy: Policy, versions: Callable[[], PolicyTimeline] | None = None) -> Rules:
    """All of POLICY §2 that depends on the customer's stream: identity and state.

    ``versions``: the policy versions in force as known at the decision (``policy`` alone without it).
    """

    def guard(history: list[RecordedEvent], past: PastEvents) -> Guard:
        return Guard(policy, history, past, versions)

    return guard


@dataclass
class Engine:
    store: EventStore
    wrapper: KeyWrapper
    policy: Policy = field(default_factory=load_policy)

    def __post_init__(self) -> None:
        self.wrapper = self.wrapper.bound(self.store)  # refuses a KEK the store was not created with

    def ingestor(self, clock: Clock = utcnow, batch_size: int = 1000) -> Ingestor:
        """Ingestion with every rule under the store's policy versions, referral qualification decided in place."""
        versions = VersionsInForce(self.store, self.policy)
        return Ingestor(
            self.store,
            self.wrapper,
            acceptance_rules(self.policy, versions),
            clock=clock,
            batch_size=batch_size,
            referrals=ReferralWatch(self.store, self.policy, versions),
            versions=versions,
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
    db: str | None = None,
    kek: KekSource = NO_KEK,
    policy: str | None = None,
    keys: bool = True,
    create: bool = True,
    alongside_other_tables: bool = True,
) -> Engine:
    """The engine on a store.

    ``kek``: where configuration says the KEK is (the interfaces read
    ``TIMELINE_KEK`` and ``TIMELINE_KEK_FILE``; nothing here reads the
    environment). ``keys=True``: the KEK is loaded and checked
    against the store before anything is done; ``keys=False``: only if a key
    is wrapped or unwrapped (state, explain, verify never do, so they need no
    KEK). ``create=False``: the store must exist (commands that read); then
    no key file is made either. Without a configured KEK the key file beside
    an embedded SQLite database is used, generated with a store that has no
    key yet; on PostgreSQL a missing KEK is an error.
    """
    chosen = load_policy(policy) if policy else load_policy()
    url = StoreUrl.parse(db)
    key = None
    if keys:  # a malformed or missing KEK is refused before the store is touched
        key = configured_kek(kek, embedded=url.embedded)
    store = open_store(url.text, create=create, alongside_other_tables=alongside_other_tables)
    try:
        wrapper = KeyWrapper(key if key is not None else partial(kek_for_store, store, kek, create), store)
        if keys:
            wrapper.check(writing=create)
    except BaseException:
        store.close()
        raise
    return Engine(store, wrapper, chosen)


def verify_wrapper(store: EventStore, kek: KekSource) -> KeyWrapper | None:
    """The wrapper ``verify`` checks keys and PII with, if a KEK is configured or beside the store; else ``None``.

    Never creates a key file; a ``TIMELINE_KEK`` that is set but unusable, or not the store's, is an error.
    """
    try:
        key = kek_for_store(store, kek, may_create=False)
    except ConfigurationError:
        if kek.text:
            raise
        return None
    wrapper = KeyWrapper(key, store)
    wrapper.check(writing=False)
    return wrapper
