"""Customer data keys as readers need them: unwrapped, cached, or known erased."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from timeline.application.codec import decode
from timeline.application.ports import EventStore, KeyWrapping, StoredRow
from timeline.domain.recorded import RecordedEvent


@dataclass(frozen=True, slots=True)
class CustomerKey:
    dek: bytes | None
    erased: bool


class KeyRing:
    """Unwraps each customer's key once; ``wrapper=None`` reads PII as encrypted."""

    def __init__(self, store: EventStore, wrapper: KeyWrapping | None) -> None:
        self._store = store
        self._wrapper = wrapper
        self._cache: dict[str, CustomerKey] = {}

    def keys(self, customer_ids: Iterable[str]) -> dict[str, CustomerKey]:
        wanted = [c for c in dict.fromkeys(customer_ids) if c not in self._cache]
        if wanted:
            wrapped = self._store.wrapped_keys(wanted)
            for customer_id in wanted:
                blob = wrapped.get(customer_id)
                erased = customer_id in wrapped and blob is None
                dek = None
                if blob is not None and self._wrapper is not None:
                    dek = self._wrapper.unwrap(customer_id, blob)
                self._cache[customer_id] = CustomerKey(dek, erased)
        return {c: self._cache[c] for c in customer_ids}

    def forget(self, customer_id: str) -> None:
        self._cache.pop(customer_id, None)

    def decode(self, rows: list[StoredRow], with_hash: bool = True) -> list[RecordedEvent]:
        """``with_hash=False``: events without their chain hash, for readers that never look at it."""
        keys = self.keys({r.customer_id for r in rows})
        return [decode(r, keys[r.customer_id].dek, keys[r.customer_id].erased, with_hash) for r in rows]


def load_history(store: EventStore, ring: KeyRing, customer_id: str) -> list[RecordedEvent]:
    """One customer's events in stream (storage) order, PII opened where allowed."""
    return ring.decode(store.read_stream(customer_id))
