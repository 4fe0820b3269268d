"""What the SQLite and PostgreSQL stores share: side tables, queries and the append.

The events table is the eventsourcing library's (stream id = customer id,
version = position in the stream, notification id = global position). Next to
it, written in the same transaction through the recorder's ``_insert_events``
hook, live:

- ``timeline_event_index``: event id → customer, version and chain hash (the
  idempotency key, and a second record of each hash for ``verify``);
- ``timeline_heads``: each customer's last version and hash (so deleting the
  newest event is detected too);
- ``timeline_keys``: each customer's wrapped data key; erasure nulls it;
- ``timeline_referrals``: referred customer → ``referral.made`` event id, so
  that qualification (POLICY §5) finds every referral naming a customer;
- ``timeline_meta``: facts about the store itself, written once (the check
  value of its key-encryption key, the mark of a demo store).

Events, the index and the metadata are immutable: triggers refuse UPDATE,
DELETE and TRUNCATE, whoever asks. A data key may only be nulled, and only
for a customer whose stream holds a stored ``customer.erased``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from timeline.application.ports import AppendBatch, EventStore, IndexEntry, StoredRow
from timeline.domain.errors import ConcurrencyConflict, ConfigurationError

EVENTS_TABLE = "timeline_events"
META_TABLE = "timeline_meta"
IMMUTABLE_TABLES = (EVENTS_TABLE, "timeline_event_index", META_TABLE)
KEY_GUARD = (
    "OLD.wrapped_key IS NOT NULL AND NEW.wrapped_key IS NULL AND NEW.customer_id = OLD.customer_id "
    f"AND EXISTS (SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = OLD.customer_id AND topic = 'customer.erased')"
)
"""The one change a data key may undergo: erasure nulls it once its ``customer.erased`` is stored."""
KEY_REFUSED = "timeline: a data key is destroyed only by an erasure stored in the same transaction"


def other_tables_refused(url: str, tables: Iterable[str]) -> None:
    """Refuse to add timeline's tables to a database that holds other tables, unless asked to."""
    others = sorted(t for t in tables if not t.startswith(("timeline_", "sqlite_")))
    if others:
        listed = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise ConfigurationError(
            f"the database at {url} holds other tables ({listed}) and no timeline store; "
            f"to add timeline's tables beside them run: timeline init --db URL --alongside-other-tables"
        )


def side_writes(curs: Any, batch: AppendBatch, mark: str, index_and_heads: bool = True) -> None:
    """Index, heads, referral and new key rows of a batch, in the transaction of its events.

    The portable form, one statement per row; PostgreSQL overrides the index
    and heads with array inserts for speed. Keys are destroyed after the
    events are inserted (:func:`destroy_keys`).
    """
    p = mark
    if batch.events and index_and_heads:
        curs.executemany(
            f"INSERT INTO timeline_event_index (event_id, customer_id, version, hash) VALUES ({p}, {p}, {p}, {p})",
            [(str(e.event_id), e.customer_id, e.version, e.hash) for e in batch.events],
        )
        last: dict[str, tuple[int, str]] = {}
        for e in batch.events:
            last[e.customer_id] = (e.version, e.hash)
        curs.executemany(
            f"INSERT INTO timeline_heads (customer_id, version, hash) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, hash = excluded.hash",
            [(c, v, h) for c, (v, h) in last.items()],
        )
    referrals = [(e.refers_to, str(e.event_id)) for e in batch.events if e.refers_to]
    if referrals:
        curs.executemany(
            f"INSERT INTO timeline_referrals (referred_customer_id, event_id) VALUES ({p}, {p})", referrals
        )
    if batch.new_keys:
        curs.executemany(
            f"INSERT INTO timeline_keys (customer_id, wrapped_key) VALUES ({p}, {p})",
            list(batch.new_keys.items()),
        )


def destroy_keys(curs: Any, batch: AppendBatch, mark: str) -> None:
    """Null the erased customers' keys: after the events, as the keys' trigger wants the erasure stored first."""
    if batch.destroy_keys:
        curs.executemany(
            f"UPDATE timeline_keys SET wrapped_key = NULL WHERE customer_id = {mark} AND wrapped_key IS NOT NULL",
            [(c,) for c in batch.destroy_keys],
        )


def check_reads(curs: Any, batch: AppendBatch, mark: str, own_written: bool) -> None:
    """Raise :class:`ConcurrencyConflict` if a stream or referral count of the batch's read set moved.

    Run under the write lock, so what it reads is what the batch commits
    against. ``own_written``: the batch's own referral rows are already
    inserted (they are not a change by another writer).
    """
    versions, referrals = batch.read_versions, batch.read_referrals
    for chunk in _chunks(list(versions), 500):
        curs.execute(
            f"SELECT customer_id, version FROM timeline_heads WHERE customer_id IN ({', '.join([mark] * len(chunk))})",
            chunk,
        )
        heads = dict(_tuple(r) for r in curs.fetchall())
        for customer in chunk:
            if heads.get(customer, 0) != versions[customer]:
                raise ConcurrencyConflict(
                    f"stream {customer} moved from version {versions[customer]} to {heads.get(customer, 0)} "
                    "while the batch was decided"
                )
    if not referrals:
        return
    own: dict[str, int] = {}
    if own_written:
        for e in batch.events:
            if e.refers_to in referrals:
                own[e.refers_to] = own.get(e.refers_to, 0) + 1
    for chunk in _chunks(list(referrals), 500):
        curs.execute(
            "SELECT referred_customer_id, count(*) FROM timeline_referrals "
            f"WHERE referred_customer_id IN ({', '.join([mark] * len(chunk))}) GROUP BY referred_customer_id",
            chunk,
        )
        counts = dict(_tuple(r) for r in curs.fetchall())
        for referred in chunk:
            if counts.get(referred, 0) - own.get(referred, 0) != referrals[referred]:
                raise ConcurrencyConflict(f"another writer stored a referral naming {referred} meanwhile")


def _tuple(row: Any) -> tuple[Any, ...]:
    """A row as a tuple, whatever the cursor's row factory (the library's PostgreSQL cursor gives dicts)."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def to_stored_events(batch: AppendBatch) -> list[StoredEvent]:
    return [
        StoredEvent(originator_id=e.customer_id, originator_version=e.version, topic=e.type, state=e.state)
        for e in batch.events
    ]


class SqlEventStore(EventStore):
    """Queries common to both backends; subclasses give the cursor and placeholder."""

    mark = "?"
    _datastore: Any

    @abc.abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abc.abstractmethod
    def _insert(self, batch: AppendBatch) -> Sequence[int]: ...

    def opener(self) -> Callable[[], EventStore]:
        from timeline.store import open_store

        return partial(open_store, self.url, create=False)

    def _in(self, values: Sequence[Any]) -> str:
        return ", ".join([self.mark] * len(values))

    def append(self, batch: AppendBatch) -> list[int]:
        if not batch.events and not batch.new_keys and not batch.destroy_keys:
            if batch.read_versions or batch.read_referrals:
                self._check_reads(batch)
            return []
        try:
            return list(self._insert(batch) or [])
        except IntegrityError as exc:
            raise ConcurrencyConflict(f"another writer got there first: {exc}") from exc

    @abc.abstractmethod
    def _check_reads(self, batch: AppendBatch) -> None:
        """:func:`check_reads` for a batch that writes nothing: what it read still holds after it decided."""

    def read_log(self, after: int, limit: int) -> list[StoredRow]:
        rows = self._rows(
            f"SELECT {self._position}, originator_id, originator_version, state "
            f"FROM {EVENTS_TABLE} WHERE {self._position} > {self.mark} "
            f"ORDER BY {self._position} LIMIT {self.mark}",
            (after, limit),
        )
        return [StoredRow(r[0], r[1], r[2], state_bytes(r[3])) for r in rows]

    def head_position(self) -> int:
        rows = self._rows(f"SELECT MAX({self._position}) FROM {EVENTS_TABLE}")
        return rows[0][0] or 0

    def read_streams(self, customer_ids: Iterable[str]) -> dict[str, list[StoredRow]]:
        ids = list(dict.fromkeys(customer_ids))
        result: dict[str, list[StoredRow]] = {c: [] for c in ids}
        for chunk in _chunks(ids, 500):
            rows = self._rows(
                f"SELECT {self._position}, originator_id, originator_version, state "
                f"FROM {EVENTS_TABLE} WHERE originator_id IN ({self._in(chunk)}) "
                "ORDER BY originator_id, originator_version",
                chunk,
            )
            for r in rows:
                result[r[1]].append(StoredRow(r[0], r[1], r[2], state_bytes(r[3])))
        return result

    def read_stream(self, customer_id: str, after_version: int = 0) -> list[StoredRow]:
        rows = self._rows(
            f"SELECT {self._position}, originator_id, originator_version, state FROM {EVENTS_TABLE} "
            f"WHERE originator_id = {self.mark} AND originator_version > {self.mark} ORDER BY originator_version",
            (customer_id, after_version),
        )
        return [StoredRow(r[0], r[1], r[2], state_bytes(r[3])) for r in rows]

    def read_rows(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], StoredRow]:
        found: dict[tuple[str, int], StoredRow] = {}
        pair = f"({self.mark}, {self.mark})"
        for chunk in _chunks(list(dict.fromkeys(keys)), 400):
            rows = self._rows(
                f"SELECT {self._position}, originator_id, originator_version, state FROM {EVENTS_TABLE} "
                f"WHERE (originator_id, originator_version) IN (VALUES {', '.join([pair] * len(chunk))})",
                [value for key in chunk for value in key],
            )
            for r in rows:
                found[(r[1], r[2])] = StoredRow(r[0], r[1], r[2], state_bytes(r[3]))
        return found

    def lookup_events(self, event_ids: Sequence[UUID]) -> dict[UUID, IndexEntry]:
        found: dict[UUID, IndexEntry] = {}
        for chunk in _chunks([str(e) for e in event_ids], 500):
            for r in self._rows(
                "SELECT event_id, customer_id, version, hash FROM timeline_event_index "
                f"WHERE event_id IN ({self._in(chunk)})",
                chunk,
            ):
                entry = IndexEntry(UUID(str(r[0])), r[1], r[2], r[3])
                found[entry.event_id] = entry
        return found

    def referrals_naming(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        found: dict[str, list[IndexEntry]] = {}
        for chunk in _chunks(list(dict.fromkeys(customer_ids)), 500):
            for r in self._rows(
                "SELECT r.referred_customer_id, i.event_id, i.customer_id, i.version, i.hash "
                "FROM timeline_referrals r JOIN timeline_event_index i ON i.event_id = r.event_id "
                f"WHERE r.referred_customer_id IN ({self._in(chunk)}) ORDER BY i.customer_id, i.version",
                chunk,
            ):
                found.setdefault(r[0], []).append(IndexEntry(UUID(str(r[1])), r[2], r[3], r[4]))
        return found

    def index_of(self, customer_id: str) -> list[IndexEntry]:
        return [
            IndexEntry(UUID(str(r[0])), r[1], r[2], r[3])
            for r in self._rows(
                "SELECT event_id, customer_id, version, hash FROM timeline_event_index "
                f"WHERE customer_id = {self.mark} ORDER BY version",
                (customer_id,),
            )
        ]

    def heads(self, customer_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for chunk in _chunks(list(customer_ids), 500):
            for r in self._rows(
                f"SELECT customer_id, version, hash FROM timeline_heads WHERE customer_id IN ({self._in(chunk)})",
                chunk,
            ):
                found[r[0]] = (r[1], r[2])
        return found

    def indexes_of(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        found: dict[str, list[IndexEntry]] = {c: [] for c in customer_ids}
        for chunk in _chunks(list(found), 500):
            for r in self._rows(
                "SELECT event_id, customer_id, version, hash FROM timeline_event_index "
                f"WHERE customer_id IN ({self._in(chunk)}) ORDER BY customer_id, version",
                chunk,
            ):
                found[r[1]].append(IndexEntry(UUID(str(r[0])), r[1], r[2], r[3]))
        return found

    def dangling_referrals(self, customer_ids: Iterable[str]) -> dict[str, list[UUID]]:
        found: dict[str, list[UUID]] = {}
        for chunk in _chunks(list(dict.fromkeys(customer_ids)), 500):
            for r in self._rows(
                "SELECT r.referred_customer_id, r.event_id FROM timeline_referrals r "
                f"WHERE r.referred_customer_id IN ({self._in(chunk)}) AND NOT EXISTS "
                "(SELECT 1 FROM timeline_event_index i WHERE i.event_id = r.event_id) ORDER BY 1, 2",
                chunk,
            ):
                found.setdefault(r[0], []).append(UUID(str(r[1])))
        return found

    def customer_ids(self) -> list[str]:
        rows = self._rows(
            f"SELECT originator_id FROM {EVENTS_TABLE} UNION SELECT customer_id FROM timeline_event_index "
            "UNION SELECT customer_id FROM timeline_heads UNION SELECT customer_id FROM timeline_keys "
            "UNION SELECT referred_customer_id FROM timeline_referrals ORDER BY 1"
        )
        return [r[0] for r in rows]

    def wrapped_keys(self, customer_ids: Iterable[str]) -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        for chunk in _chunks(list(customer_ids), 500):
            for r in self._rows(
                f"SELECT customer_id, wrapped_key FROM timeline_keys WHERE customer_id IN ({self._in(chunk)})",
                chunk,
            ):
                found[r[0]] = None if r[1] is None else state_bytes(r[1])
        return found

    def any_key(self) -> tuple[str, bytes | None] | None:
        rows = self._rows("SELECT customer_id, wrapped_key FROM timeline_keys ORDER BY wrapped_key IS NULL LIMIT 1")
        return (rows[0][0], None if rows[0][1] is None else bytes(rows[0][1])) if rows else None

    def metadata(self, name: str) -> str | None:
        if not self._has_table(META_TABLE):
            return None  # a store made before the table existed, opened by a reader (which adds no table)
        rows = self._rows(f"SELECT value FROM {META_TABLE} WHERE name = {self.mark}", (name,))
        return rows[0][0] if rows else None

    def record_metadata(self, name: str, value: str) -> str:
        p = self.mark
        try:
            with self._datastore.transaction(commit=True) as c:
                c.execute(
                    f"INSERT INTO {META_TABLE} (name, value) SELECT {p}, {p} "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {META_TABLE} WHERE name = {p})",
                    (name, value, name),
                )
        except IntegrityError:
            pass  # another writer recorded it first: theirs stands
        stored = self.metadata(name)
        assert stored is not None, f"{name} was just recorded"
        return stored

    @abc.abstractmethod
    def _has_table(self, name: str) -> bool: ...

    @property
    @abc.abstractmethod
    def _position(self) -> str: ...


def state_bytes(value: Any) -> bytes:
    """A stored state as bytes, whatever the database hands back.

    The engine writes bytes; a value changed behind its back may come back as text (SQLite's
    ``replace()`` returns TEXT) or a number. Bytes stay as they are; anything else is its UTF-8 text,
    which the codec then refuses as no event it wrote — never ``bytes(5)``, five zero bytes.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass") if value is not None else b""


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
