"""Tamper evidence: recompute each customer's hash chain and name the first break.

Three records must agree: the events' stored bytes (each holding the hash of
its predecessor), the event-id index (each event's hash as written) and the
stream heads (the last version and hash). Altering an event's bytes changes
its hash; deleting one leaves a gap in versions or a head beyond the last
row; inserting one leaves a row the index never saw. An attacker who rewrites
all three for the newest event is beyond any in-database check: publish the
heads elsewhere (the Kafka relay does) to close that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from timeline.codec import GENESIS_HASH, chain_hash
from timeline.errors import TimelineError
from timeline.store.port import EventStore, IndexEntry, StoredRow


@dataclass(frozen=True, slots=True)
class Finding:
    """The first break in one customer's chain."""

    customer_id: str
    kind: str  # altered | inserted | missing
    version: int
    event_id: str | None
    detail: str

    def __str__(self) -> str:
        event = f" (event {self.event_id})" if self.event_id else ""
        return f"customer {self.customer_id}: {self.kind} event at version {self.version}{event}: {self.detail}"

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

    @property
    def intact(self) -> bool:
        return not self.findings


def verify(store: EventStore, customer_id: str | None = None) -> Report:
    customers = [customer_id] if customer_id else store.customer_ids()
    if customer_id and not store.read_stream(customer_id) and not store.index_of(customer_id):
        raise TimelineError(f"unknown customer {customer_id}: no events stored")
    findings: list[Finding] = []
    events = 0
    for chunk_start in range(0, len(customers), 500):
        chunk = customers[chunk_start : chunk_start + 500]
        streams = store.read_streams(chunk)
        heads = store.heads(chunk)
        for cid in chunk:
            rows = streams[cid]
            events += len(rows)
            finding = next(_breaks(cid, rows, store.index_of(cid), heads.get(cid)), None)
            if finding:
                findings.append(finding)
    return Report(len(customers), events, findings)


def _breaks(
    customer_id: str, rows: list[StoredRow], index: list[IndexEntry], head: tuple[int, str] | None
) -> Iterator[Finding]:
    by_version = {e.version: e for e in index}
    prev_hash = GENESIS_HASH
    expected = 1
    for row in rows:
        if row.version > expected:
            gone = by_version.get(expected)
            yield Finding(customer_id, "missing", expected, _id(gone), "no stored row for this version")
            return
        entry = by_version.get(row.version)
        state_id, state_prev = _read(row.state)
        digest = chain_hash(row.state)
        if entry is None:
            yield Finding(customer_id, "inserted", row.version, state_id, "row is not in the event index")
            return
        if state_id != str(entry.event_id) or digest != entry.hash:
            yield Finding(
                customer_id,
                "altered",
                row.version,
                str(entry.event_id),
                "stored bytes do not match the hash recorded when it was written",
            )
            return
        if state_prev != prev_hash:
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


def _read(state: bytes) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(state)
        return str(obj.get("event_id")), obj.get("prev_hash")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None, None


def _id(entry: IndexEntry | None) -> str | None:
    return str(entry.event_id) if entry else None
