"""Wiring: a store, the keys and the rules, assembled from configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from timeline.crypto import KeyWrapper, load_kek
from timeline.identity import check_identity
from timeline.ingest import Clock, Ingestor, Rules, utcnow
from timeline.keyring import KeyRing
from timeline.recorded import RecordedEvent
from timeline.store import open_store
from timeline.store.port import EventStore


def acceptance_rules() -> Rules:
    """All of RULES §2 that depends on the customer's stream."""

    def check(history: Sequence[RecordedEvent], candidate: RecordedEvent) -> None:
        check_identity(history, candidate)

    return check


@dataclass
class Engine:
    store: EventStore
    wrapper: KeyWrapper

    def ingestor(self, clock: Clock = utcnow, batch_size: int = 1000) -> Ingestor:
        return Ingestor(self.store, self.wrapper, acceptance_rules(), clock=clock, batch_size=batch_size)

    def keyring(self) -> KeyRing:
        return KeyRing(self.store, self.wrapper)

    def close(self) -> None:
        self.store.close()


def open_engine(db: str | None = None, kek: bytes | None = None) -> Engine:
    wrapper = KeyWrapper(kek if kek is not None else load_kek())
    return Engine(open_store(db), wrapper)
