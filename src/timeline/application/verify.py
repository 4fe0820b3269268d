"""Tamper evidence: recompute each customer's hash chain and name the first break.

Three records must agree: the events' stored bytes (each holding the hash of
its predecessor), the event-id index (each event's hash as written) and the
stream heads (the last version and hash). Altering an event's bytes changes
its hash; deleting one leaves a gap in versions or a head beyond the last
row; inserting one leaves a row the index never saw. Every customer that any
table names is checked, so deleting one record of a customer from some tables
leaves it visible in the others. An attacker who rewrites all three for the
newest event, or removes a customer from every table, is beyond any
in-database check (docs/DESIGN.md, "What the chain cannot catch").

Keys are checked too (:mod:`timeline.application.verify_keys`): a data key gone without an
erasure, a key kept after one, and — given the key-encryption key — keys and
PII that no key can read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID

from timeline.application.access import AccessFinding, verify_access
from timeline.application.codec import GENESIS_HASH, chain_hash, decode, first_invalid
from timeline.application.policy_store import PolicyFinding, PolicyStream
from timeline.application.ports import AccessStore, EventStore, IndexEntry, KeyWrapping, StoredRow
from timeline.application.verify_keys import NO_KEY_ROW, KeyRow, key_finding
from timeline.domain.errors import CorruptEvent, TimelineError
from timeline.domain.recorded import RecordedEvent

CHUNK = 500
"""Customers read and checked together: a handful of queries per chunk, memory bounded by the chunk."""

CHAIN_KINDS = ("altered", "inserted", "missing")


@dataclass(frozen=True, slots=True)
class Finding:
    """The first break in one customer's chain, or what is wrong with its key.

    ``kind`` is one of :data:`CHAIN_KINDS` or of ``timeline.application.verify_keys.KEY_KINDS``; ``version`` is
    ``None`` where no event of the customer's stream is concerned.
    """

    customer_id: str
    kind: str
    version: int | None
    event_id: str | None
    detail: str

    def __str__(self) -> str:
        event = f" (event {self.event_id})" if self.event_id else ""
        at = f" at version {self.version}" if self.version is not None else ""
        what = f"{self.kind} event" if self.kind in CHAIN_KINDS else self.kind
        return f"customer {self.customer_id}: {what}{at}{event}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "kind": self.kind,
            "version": self.version,
            "event_id": self.event_id,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Report:
    customers: int
    events: int
    findings: list[Finding]
    pii_checked: bool
    """Whether keys were unwrapped and PII opened: only with the key-encryption key."""
    access_findings: list[AccessFinding] = field(default_factory=list)
    """The first break of the access trail's chain, if one was checked and is broken."""
    policy_findings: list[PolicyFinding] = field(default_factory=list)
    """The first break of the store's policy stream (published versions), on a whole-store check."""

    @property
    def intact(self) -> bool:
        return not self.findings and not self.access_findings and not self.policy_findings


def verify(
    store: EventStore,
    customer_id: str | None = None,
    wrapper: KeyWrapping | None = None,
    access: AccessStore | None = None,
) -> Report:
    """Check every customer any table names (or one); ``wrapper`` also checks that keys and PII can be read.

    ``access``: the access trail's chain is checked too (on a whole-store check, not for one customer).
    """
    customers = [customer_id] if customer_id else store.customer_ids()
    findings: list[Finding] = []
    events = 0
    for start in range(0, len(customers), CHUNK):
        chunk = customers[start : start + CHUNK]
        streams = store.read_streams(chunk)
        indexes = store.indexes_of(chunk)
        heads = store.heads(chunk)
        keys = store.wrapped_keys(chunk)
        dangling = store.dangling_referrals(chunk)
        if customer_id and _absent(store, customer_id, streams, indexes, heads, keys, dangling):
            raise TimelineError(f"unknown customer {customer_id}: no events stored")
        for cid in chunk:
            rows = streams[cid]
            events += len(rows)
            decoded = [_decoded(row) for row in rows]
            key = keys.get(cid, NO_KEY_ROW)
            chain = next(_breaks(cid, rows, decoded, indexes[cid], heads.get(cid)), None)
            chain = chain or _traces(cid, rows, indexes[cid], heads.get(cid), key, dangling.get(cid, []))
            chain = chain or _newest_invalid(cid, decoded)
            if chain:
                findings.append(chain)
            problem = key_finding(cid, [e for e in decoded if isinstance(e, RecordedEvent)], rows, key, wrapper)
            if problem:
                findings.append(Finding(cid, *problem))
    trail = verify_access(access) if access is not None and customer_id is None else []
    policies = PolicyStream.verify_store(store) if customer_id is None else []
    return Report(len(customers), events, findings, wrapper is not None, trail, policies)


def _absent(
    store: EventStore,
    customer_id: str,
    streams: dict[str, list[StoredRow]],
    indexes: dict[str, list[IndexEntry]],
    heads: dict[str, tuple[int, str]],
    keys: dict[str, bytes | None],
    dangling: dict[str, list[UUID]],
) -> bool:
    """Whether no table names the customer (a referral naming it counts: it is in the store's records)."""
    named = streams[customer_id] or indexes[customer_id] or customer_id in heads or customer_id in keys
    return not (named or dangling or store.referrals_naming([customer_id]))


def _decoded(row: StoredRow) -> RecordedEvent | CorruptEvent:
    """The row read as every reader reads it (no keys), or why it cannot be."""
    try:
        return decode(row, None, False, with_hash=False)
    except CorruptEvent as exc:
        return exc


def _breaks(
    customer_id: str,
    rows: list[StoredRow],
    decoded: list[RecordedEvent | CorruptEvent],
    index: list[IndexEntry],
    head: tuple[int, str] | None,
) -> Iterator[Finding]:
    by_version = {e.version: e for e in index}
    prev_hash = GENESIS_HASH
    expected = 1
    for row, event in zip(rows, decoded, strict=True):
        if row.version > expected:
            gone = by_version.get(expected)
            yield Finding(customer_id, "missing", expected, _id(gone), "no stored row for this version")
            return
        entry = by_version.get(row.version)
        corrupt = event if isinstance(event, CorruptEvent) else None
        digest = chain_hash(row.state)
        if entry is None:
            state_id = None if corrupt else str(event.event_id)  # type: ignore[union-attr]
            yield Finding(customer_id, "inserted", row.version, state_id, "row is not in the event index")
            return
        if digest != entry.hash:
            malformed = f"; they are no event the engine writes ({corrupt.reason})" if corrupt else ""
            yield Finding(
                customer_id,
                "altered",
                row.version,
                str(entry.event_id),
                f"stored bytes do not match the hash recorded when it was written{malformed}",
            )
            return
        if corrupt or event.event_id != entry.event_id:  # type: ignore[union-attr]
            why = f"its stored value is malformed ({corrupt.reason})" if corrupt else "its event id is another"
            yield Finding(
                customer_id, "altered", row.version, str(entry.event_id), f"{why}, though its hash matches the index"
            )
            return
        if event.prev_hash != prev_hash:  # type: ignore[union-attr]
            if row.version == 1:
                yield Finding(customer_id, "altered", 1, str(entry.event_id), "first event does not start the chain")
                return
            # This event's bytes are as written, and it recorded its predecessor's hash then: the
            # predecessor's bytes (and their index entry) were rewritten since.
            before = by_version[row.version - 1]
            yield Finding(
                customer_id,
                "altered",
                before.version,
                str(before.event_id),
                f"its hash no longer matches the one recorded by the next event (version {row.version})",
            )
            return
        prev_hash, expected = digest, row.version + 1
    if expected in by_version:
        gone = by_version[expected]
        yield Finding(customer_id, "missing", expected, _id(gone), "indexed event has no stored row")
        return
    last = expected - 1
    if head is None:
        if rows:
            yield Finding(
                customer_id,
                "inserted",
                1,
                _id(by_version.get(1)),
                "the stream has no head: the engine never wrote it (or its head was deleted)",
            )
    elif head[0] > last:
        yield Finding(
            customer_id, "missing", expected, None, f"stream head says version {head[0]}, chain ends at {last}"
        )
    elif head[0] < last:
        yield Finding(
            customer_id,
            "inserted",
            head[0] + 1,
            _id(by_version.get(head[0] + 1)),
            f"stream head says version {head[0]}, chain goes on to {last}",
        )
    elif head[1] != prev_hash:
        yield Finding(
            customer_id,
            "altered",
            last,
            _id(by_version.get(last)),
            "newest event's hash does not match the stream head",
        )


def _traces(
    customer_id: str,
    rows: list[StoredRow],
    index: list[IndexEntry],
    head: tuple[int, str] | None,
    key: KeyRow,
    dangling: list[UUID],
) -> Finding | None:
    """What other tables keep of events that are gone from the stream, its index and its head."""
    if dangling:
        return Finding(
            customer_id,
            "missing",
            None,
            str(dangling[0]),
            "the referral index names a referral of this customer that the event-id index no longer holds",
        )
    if not rows and not index and head is None and key is not NO_KEY_ROW:
        return Finding(
            customer_id, "missing", 1, None, "a key row is stored but no event: the customer's stream was deleted"
        )
    return None


def _newest_invalid(customer_id: str, decoded: list[RecordedEvent | CorruptEvent]) -> Finding | None:
    """The newest event's content against the event models, once its chain is intact.

    An older event cannot be rewritten unnoticed (its successor holds its hash); the newest one can, with its
    index entry and head, and its envelope may still be well-formed: validating it costs one model per customer.
    """
    newest = decoded[-1] if decoded else None
    corrupt = first_invalid([newest]) if isinstance(newest, RecordedEvent) else None
    if corrupt is None:
        return None
    return Finding(
        customer_id,
        "altered",
        corrupt.version,
        str(newest.event_id),  # type: ignore[union-attr]
        f"its stored value is malformed ({corrupt.reason}), though its hash matches the index and head",
    )


def _id(entry: IndexEntry | None) -> str | None:
    return str(entry.event_id) if entry else None
