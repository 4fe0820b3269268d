"""The ports of the event store: what the engine needs, whatever the database.

Every backend (SQLite, PostgreSQL) passes the same contract suite in
``tests/contract``. Stored bytes are opaque here: encoding, encryption and
hash chaining happen above (``timeline.application.codec``), so a backend only has to
keep bytes, order and uniqueness.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol
from uuid import UUID


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of the events table: its log position, stream version and bytes."""

    position: int
    customer_id: str
    version: int
    state: bytes


class NewEvent(NamedTuple):
    """One event ready to append: the codec has encoded, encrypted and hashed it.

    A named tuple: ingestion makes one per event, and a tuple is built in a
    fraction of the time of a frozen dataclass.
    """

    customer_id: str
    version: int
    event_id: UUID
    type: str
    state: bytes
    hash: str
    refers_to: str | None = None
    """For ``referral.made``: the referred customer, indexed so qualification finds every referral of them."""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """The event-id index: where an event lives and the hash it was written with."""

    event_id: UUID
    customer_id: str
    version: int
    hash: str


@dataclass(slots=True)
class AppendBatch:
    """Everything one transaction writes: events, new customer keys, destroyed keys."""

    events: list[NewEvent] = field(default_factory=list)
    new_keys: dict[str, bytes] = field(default_factory=dict)
    destroy_keys: list[str] = field(default_factory=list)
    read_versions: dict[str, int] = field(default_factory=dict)
    """The read set: streams the batch's verdicts read but it does not append to, with the version read
    (0: no events). The append checks them under the write lock, so no verdict rests on a stale view."""
    read_referrals: dict[str, int] = field(default_factory=dict)
    """Referred customer → how many ``referral.made`` events naming them were stored when qualification
    read them (before this batch's own)."""


class LogReader(abc.ABC):
    """The global log, in commit order: what the relay and ``state --all`` tail."""

    @abc.abstractmethod
    def read_log(self, after: int, limit: int) -> list[StoredRow]:
        """Rows with position > ``after``, ascending, at most ``limit``.

        Positions increase in commit order but may have gaps (rolled-back
        transactions consume sequence values), so a reader must resume from
        the last position it saw, never from a count.
        """

    @abc.abstractmethod
    def head_position(self) -> int:
        """The highest position stored, 0 for an empty store."""


class EventStore(LogReader):
    """Append-only storage of customer streams with an event-id index and keys."""

    url: str

    def opener(self) -> Callable[[], EventStore] | None:
        """A picklable callable opening this store again (for worker processes); None if it cannot be shared."""
        return None

    @abc.abstractmethod
    def append(self, batch: AppendBatch) -> list[int]:
        """Write the batch in one transaction; return the positions of its events.

        Raises :class:`timeline.domain.errors.ConcurrencyConflict` (and writes
        nothing) if any (customer, version) or event id is already taken, or
        if anything of the batch's read set changed since it was read. A batch
        that writes nothing still has its read set checked.
        """

    @abc.abstractmethod
    def read_streams(self, customer_ids: Iterable[str]) -> dict[str, list[StoredRow]]:
        """Each named customer's rows in version order (absent customers: empty)."""

    def read_stream(self, customer_id: str, after_version: int = 0) -> list[StoredRow]:
        """One customer's rows with version > ``after_version``, in version order."""
        return [r for r in self.read_streams([customer_id])[customer_id] if r.version > after_version]

    def read_rows(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], StoredRow]:
        """The rows at these (customer, version) keys that are stored."""
        wanted = set(keys)
        streams = self.read_streams(dict.fromkeys(c for c, _ in keys))
        rows = (r for stream in streams.values() for r in stream)
        return {(r.customer_id, r.version): r for r in rows if (r.customer_id, r.version) in wanted}

    @abc.abstractmethod
    def lookup_events(self, event_ids: Sequence[UUID]) -> dict[UUID, IndexEntry]:
        """The index entries of those event ids that are stored."""

    @abc.abstractmethod
    def referrals_naming(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        """Index entries of the ``referral.made`` events naming each customer (from any referrer)."""

    @abc.abstractmethod
    def index_of(self, customer_id: str) -> list[IndexEntry]:
        """Every index entry of one customer, by version (for verification)."""

    @abc.abstractmethod
    def indexes_of(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        """:meth:`index_of` for many customers in few queries (absent customers: empty)."""

    @abc.abstractmethod
    def dangling_referrals(self, customer_ids: Iterable[str]) -> dict[str, list[UUID]]:
        """Event ids of referral-index rows naming each customer whose event the event-id index lacks."""

    @abc.abstractmethod
    def heads(self, customer_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """(last version, last hash) of each named customer that has events."""

    @abc.abstractmethod
    def customer_ids(self) -> list[str]:
        """Every customer any table names (events, event-id index, heads, keys, referrals), sorted.

        All of them, not only those with events: a customer whose rows were deleted from one table still
        shows in another, and ``verify`` must see it.
        """

    @abc.abstractmethod
    def wrapped_keys(self, customer_ids: Iterable[str]) -> dict[str, bytes | None]:
        """Wrapped data keys; ``None`` for a destroyed (erased) key."""

    @abc.abstractmethod
    def any_key(self) -> tuple[str, bytes | None] | None:
        """One stored (customer, wrapped key), a present key before a destroyed one; ``None`` if there are none."""

    @abc.abstractmethod
    def metadata(self, name: str) -> str | None:
        """A fact recorded about the store (``timeline_meta``), ``None`` if never recorded."""

    @abc.abstractmethod
    def record_metadata(self, name: str, value: str) -> str:
        """Record a fact unless one is recorded already (facts never change); return the value that stands."""

    def default_key_file(self) -> Path | None:
        """Where the key-encryption key lives when nothing is configured: beside an embedded database only."""
        return None

    @abc.abstractmethod
    def close(self) -> None: ...


class KeyWrapping(Protocol):
    """What the application needs of the key-encryption key: a new wrapped data key, and unwrapping one."""

    def check(self, writing: bool) -> None:
        """Raise ``ConfigurationError`` unless this key may be used on the store (to write, or to read)."""

    def new_data_key(self, customer_id: str) -> tuple[bytes, bytes]:
        """A fresh data key for ``customer_id`` and its wrapped form, bound to that customer."""

    def unwrap(self, customer_id: str, wrapped: bytes) -> bytes:
        """The data key from its wrapped form; ``ConfigurationError`` if this key cannot open it."""


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """One row of the grants table: who was granted which role, and the SHA-256 of the token handed out."""

    name: str
    role: str
    rm: str | None
    branch: str | None
    token_hash: str
    granted_at: str
    revoked_at: str | None = None


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One entry of the access trail, chained to its predecessor by ``prev_hash``."""

    seq: int
    at: str
    principal: str
    role: str
    customer_id: str | None
    what: str
    purpose: str | None
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at": self.at,
            "principal": self.principal,
            "role": self.role,
            "customer_id": self.customer_id,
            "what": self.what,
            "purpose": self.purpose,
            "hash": self.hash,
        }


class AccessStore(abc.ABC):
    """Grants and the access trail, kept in the store's database beside the events.

    The trail is append-only in the database itself (triggers refuse UPDATE,
    DELETE and TRUNCATE); a grant may only be revoked. Readers never create
    tables: on a store made before they existed, reads see no grant and no record.
    """

    @abc.abstractmethod
    def has_access_tables(self) -> bool:
        """Whether the grants and access-log tables exist."""

    @abc.abstractmethod
    def add_grant(self, grant: GrantRecord) -> bool:
        """Store a new grant; ``False`` (and nothing stored) if its name already holds an active grant."""

    @abc.abstractmethod
    def revoke_grant(self, name: str, at: str) -> bool:
        """Mark the name's active grant revoked at ``at``; ``False`` if it holds none."""

    @abc.abstractmethod
    def grants(self) -> list[GrantRecord]:
        """Every grant ever made, active and revoked, oldest first."""

    @abc.abstractmethod
    def grant_by_hash(self, token_hash: str) -> GrantRecord | None:
        """The grant whose token has this SHA-256 (revoked or not), ``None`` if there is none."""

    @abc.abstractmethod
    def access_head(self) -> AccessRecord | None:
        """The newest record of the trail, ``None`` if it is empty."""

    @abc.abstractmethod
    def append_access(self, record: AccessRecord) -> bool:
        """Append one record; ``False`` (nothing stored) if its ``seq`` is no longer the next one."""

    @abc.abstractmethod
    def append_accesses(self, records: Sequence[AccessRecord]) -> bool:
        """Append consecutive records in one transaction, all or none; ``False`` (nothing stored) if the first
        ``seq`` is no longer the next one."""

    @abc.abstractmethod
    def read_access(
        self,
        after: int,
        limit: int,
        customer_id: str | None = None,
        principal: str | None = None,
        since: str | None = None,
    ) -> list[AccessRecord]:
        """Records with ``seq > after`` by ``seq``, at most ``limit``, filtered (``since``: ``at >= since``)."""
