"""An event store in process memory: the rules' tests run on it without a database server.

It keeps what the SQL stores keep (events, the event-id index, heads, keys,
referrals, metadata) and refuses what they refuse, passing the same contract
suite (``tests/contract``). One lock serialises every read and append, so a
batch's read set is checked against exactly what it commits on. Nothing
survives the process, and worker processes cannot share it (``opener()`` is
None, so readers fold in-process).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from uuid import UUID

from timeline.application.ports import AppendBatch, EventStore, IndexEntry, StoredRow
from timeline.domain.errors import ConcurrencyConflict

URL = "memory:"
ERASURE = "customer.erased"


class MemoryEventStore(EventStore):
    """The port's contract kept in dictionaries, behind one lock."""

    def __init__(self) -> None:
        self.url = URL
        self._lock = threading.RLock()
        self._log: list[StoredRow] = []
        self._positions: list[int] = []
        self._streams: dict[str, list[StoredRow]] = {}
        self._rows: dict[tuple[str, int], StoredRow] = {}
        self._erased: set[str] = set()
        self._index: dict[UUID, IndexEntry] = {}
        self._index_by_customer: dict[str, list[IndexEntry]] = {}
        self._heads: dict[str, tuple[int, str]] = {}
        self._keys: dict[str, bytes | None] = {}
        self._referrals: dict[str, list[UUID]] = {}
        self._meta: dict[str, str] = {}

    def append(self, batch: AppendBatch) -> list[int]:
        with self._lock:
            self._check_reads(batch)
            self._check_writes(batch)
            return self._write(batch)

    def _check_reads(self, batch: AppendBatch) -> None:
        """The read set still holds: no stream moved, no referral naming a read customer was added."""
        for customer, version in batch.read_versions.items():
            current = self._heads.get(customer, (0, ""))[0]
            if current != version:
                raise ConcurrencyConflict(
                    f"stream {customer} moved from version {version} to {current} while the batch was decided"
                )
        for referred, seen in batch.read_referrals.items():
            if len(self._referrals.get(referred, [])) != seen:
                raise ConcurrencyConflict(f"another writer stored a referral naming {referred} meanwhile")

    def _check_writes(self, batch: AppendBatch) -> None:
        """Refuse the whole batch if any row it writes is taken, or a key is destroyed without an erasure."""
        versions: set[tuple[str, int]] = set()
        ids: set[UUID] = set()
        for e in batch.events:
            key = (e.customer_id, e.version)
            if key in versions or key in self._rows:
                raise ConcurrencyConflict(f"another writer got there first: {e.customer_id} version {e.version}")
            if e.event_id in ids or e.event_id in self._index:
                raise ConcurrencyConflict(f"another writer got there first: event {e.event_id}")
            versions.add(key)
            ids.add(e.event_id)
        for customer in batch.new_keys:
            if customer in self._keys:
                raise ConcurrencyConflict(f"another writer got there first: the data key of {customer}")
        erasing = {e.customer_id for e in batch.events if e.type == ERASURE}
        for customer in batch.destroy_keys:
            if self._keys.get(customer) is None:
                continue  # nothing to destroy: the SQL stores' UPDATE matches no row
            if customer not in erasing and customer not in self._erased:
                raise ConcurrencyConflict(
                    f"a data key is destroyed only by an erasure stored in the same transaction: {customer} has none"
                )

    def _write(self, batch: AppendBatch) -> list[int]:
        positions = []
        for e in batch.events:
            position = (self._positions[-1] if self._positions else 0) + 1
            row = StoredRow(position, e.customer_id, e.version, bytes(e.state))
            self._log.append(row)
            self._positions.append(position)
            self._rows[(e.customer_id, e.version)] = row
            stream = self._streams.setdefault(e.customer_id, [])
            stream.append(row)
            if len(stream) > 1 and stream[-2].version > e.version:
                stream.sort(key=_version)
            if e.type == ERASURE:
                self._erased.add(e.customer_id)
            entry = IndexEntry(e.event_id, e.customer_id, e.version, e.hash)
            self._index[e.event_id] = entry
            entries = self._index_by_customer.setdefault(e.customer_id, [])
            entries.append(entry)
            if len(entries) > 1 and entries[-2].version > e.version:
                entries.sort(key=_entry_version)
            self._heads[e.customer_id] = (e.version, e.hash)
            if e.refers_to:
                self._referrals.setdefault(e.refers_to, []).append(e.event_id)
            positions.append(position)
        self._keys.update(batch.new_keys)
        for customer in batch.destroy_keys:
            if customer in self._keys:
                self._keys[customer] = None
        return positions

    def read_log(self, after: int, limit: int) -> list[StoredRow]:
        with self._lock:
            start = bisect.bisect_right(self._positions, after)
            return self._log[start : start + limit]

    def head_position(self) -> int:
        with self._lock:
            return self._positions[-1] if self._positions else 0

    def read_streams(self, customer_ids: Iterable[str]) -> dict[str, list[StoredRow]]:
        with self._lock:
            return {c: list(self._streams.get(c, ())) for c in dict.fromkeys(customer_ids)}

    def read_stream(self, customer_id: str, after_version: int = 0) -> list[StoredRow]:
        with self._lock:
            return [r for r in self._streams.get(customer_id, ()) if r.version > after_version]

    def read_rows(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], StoredRow]:
        with self._lock:
            return {k: self._rows[k] for k in keys if k in self._rows}

    def lookup_events(self, event_ids: Sequence[UUID]) -> dict[UUID, IndexEntry]:
        with self._lock:
            return {i: self._index[i] for i in event_ids if i in self._index}

    def referrals_naming(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        with self._lock:
            found: dict[str, list[IndexEntry]] = {}
            for referred in dict.fromkeys(customer_ids):
                entries = [self._index[i] for i in self._referrals.get(referred, ()) if i in self._index]
                if entries:
                    found[referred] = sorted(entries, key=_entry_order)
            return found

    def index_of(self, customer_id: str) -> list[IndexEntry]:
        with self._lock:
            return list(self._index_by_customer.get(customer_id, ()))

    def indexes_of(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        with self._lock:
            return {c: list(self._index_by_customer.get(c, ())) for c in customer_ids}

    def dangling_referrals(self, customer_ids: Iterable[str]) -> dict[str, list[UUID]]:
        with self._lock:
            found: dict[str, list[UUID]] = {}
            for referred in dict.fromkeys(customer_ids):
                missing = sorted((i for i in self._referrals.get(referred, ()) if i not in self._index), key=str)
                if missing:
                    found[referred] = missing
            return found

    def heads(self, customer_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        with self._lock:
            return {c: self._heads[c] for c in customer_ids if c in self._heads}

    def customer_ids(self) -> list[str]:
        with self._lock:
            return sorted({*self._streams, *self._index_by_customer, *self._heads, *self._keys, *self._referrals})

    def wrapped_keys(self, customer_ids: Iterable[str]) -> dict[str, bytes | None]:
        with self._lock:
            return {c: self._keys[c] for c in customer_ids if c in self._keys}

    def any_key(self) -> tuple[str, bytes | None] | None:
        with self._lock:
            present = next((item for item in self._keys.items() if item[1] is not None), None)
            return present or next(iter(self._keys.items()), None)

    def metadata(self, name: str) -> str | None:
        with self._lock:
            return self._meta.get(name)

    def record_metadata(self, name: str, value: str) -> str:
        with self._lock:
            return self._meta.setdefault(name, value)

    def close(self) -> None:
        """Nothing to release: the store lives as long as the object."""


def _version(row: StoredRow) -> int:
    return row.version


def _entry_version(entry: IndexEntry) -> int:
    return entry.version


def _entry_order(entry: IndexEntry) -> tuple[str, int]:
    return (entry.customer_id, entry.version)
