"""The store's own policy stream: the versions a bank published, immutable and hash-chained (issue 13).

Each version is one entry of the store's facts table (``timeline_meta``,
named ``policy-stream/<seq>``), which every backend writes once and never
changes (the database refuses UPDATE and DELETE, as for events). An entry is
canonical JSON holding the whole policy, its ``effective_from``, its
``recorded_at`` and the hash of the entry before it, hashed like a customer
event (:func:`timeline.application.codec.chain_hash`), so ``verify`` names
an altered or missing entry. The stream is kept out of the events table on
purpose: that table is the relay's outbox and every stream in it is a
customer's.

The entries are read in sequence until the first absent one; ``verify`` also
looks a little past it, so a deleted entry in the middle is found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from timeline.application.codec import GENESIS_HASH, canonical_bytes, chain_hash
from timeline.application.ports import EventStore
from timeline.domain.errors import ConcurrencyConflict, ConfigurationError, TimelineError
from timeline.domain.policy import Policy, succession_conflict
from timeline.domain.policy_errors import InvalidPolicy
from timeline.domain.policy_versions import BEGINNING, PolicyTimeline, PolicyVersion
from timeline.domain.recorded import iso

PREFIX = "policy-stream/"
LOOK_PAST = 16
"""Entries ``verify`` looks for past the first absent one: a deleted entry leaves later ones stranded."""


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One published version as stored: its place in the stream and the hash chain."""

    seq: int
    version: PolicyVersion
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.version.id,
            "effective_from": iso(self.version.effective_from),
            "recorded_at": iso(self.version.recorded_at),
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class PolicyFinding:
    """The first break of the policy stream's chain."""

    seq: int
    kind: str
    """``altered`` or ``missing``, as for events."""
    detail: str

    def __str__(self) -> str:
        return f"policy stream: {self.kind} entry {self.seq}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {"log": "policy", "seq": self.seq, "kind": self.kind, "detail": self.detail}


class PolicyStream:
    """The published versions of one store, over the shipped (or configured) policy in force from the beginning."""

    def __init__(self, store: EventStore, base: Policy) -> None:
        self.store, self.base = store, base
        self._entries: list[PolicyEntry] = []
        self._timeline = PolicyTimeline.single(base)

    def entries(self) -> list[PolicyEntry]:
        """Every entry, in publishing order (reads only those stored since the last call)."""
        while (raw := self.store.metadata(_name(len(self._entries) + 1))) is not None:
            entry = _entry(len(self._entries) + 1, raw)
            self._entries.append(entry)
            self._timeline = PolicyTimeline((*self._timeline.versions, entry.version))
        return self._entries

    def timeline(self) -> PolicyTimeline:
        """The base policy from the beginning, then every published version, as known now."""
        self.entries()
        return self._timeline

    def known(self) -> PolicyTimeline:
        """:meth:`timeline` as last read, without asking the store."""
        return self._timeline

    def check(self, policy: Policy, effective_from: dt.datetime) -> None:
        """Refuse a version that cannot be published on this stream, naming why; nothing is stored."""
        taken = {self.base.id, *(e.version.id for e in self.entries())}
        if policy.id in taken:
            raise TimelineError(
                f"id: policy {policy.id} is already published on this store; give the new one its own id"
            )
        conflict = succession_conflict(self.base, policy)  # every version kept the base's, so the base suffices
        if conflict:
            raise InvalidPolicy(conflict)
        if effective_from <= BEGINNING:
            raise TimelineError("--effective-from: give an instant after the beginning of time")

    def publish(
        self, policy: Policy, effective_from: dt.datetime, recorded_at: dt.datetime, *, after: int | None = None
    ) -> PolicyEntry:
        """Append a checked version; ``ConcurrencyConflict`` (nothing stored) if another publish took its place.

        ``after``: how many entries the caller's decision rests on (the stream it read, e.g. to count the
        customers the version changes); one stored since is a conflict too, rather than chained before this one.
        """
        seq = len(self.entries()) + 1
        if after is not None and seq != after + 1:
            raise self._conflict(after + 1, policy)
        self.check(policy, effective_from)
        seq = len(self._entries) + 1
        prev = self._entries[-1].hash if self._entries else GENESIS_HASH
        content = {
            "seq": seq,
            "id": policy.id,
            "effective_from": iso(effective_from),
            "recorded_at": iso(recorded_at),
            "policy": policy.model_dump(mode="json"),
            "prev_hash": prev,
        }
        raw = canonical_bytes(content).decode()
        if self.store.record_metadata(_name(seq), raw) != raw:
            raise self._conflict(seq, policy)
        return self.entries()[-1]

    def _conflict(self, seq: int, policy: Policy) -> ConcurrencyConflict:
        winner = self.entries()[seq - 1].version.id
        return ConcurrencyConflict(
            f"policy {winner} was published as entry {seq} meanwhile; nothing of {policy.id} was stored:"
            " run the command again"
        )

    @staticmethod
    def verify_store(store: EventStore) -> list[PolicyFinding]:
        """The first break of the chain: an entry whose bytes or predecessor hash do not hold, or a gap."""
        prev = GENESIS_HASH
        seq = 1
        while True:
            raw = store.metadata(_name(seq))
            if raw is None:
                later = next((n for n in range(seq + 1, seq + 1 + LOOK_PAST) if store.metadata(_name(n))), None)
                if later is not None:
                    return [PolicyFinding(seq, "missing", f"entry {seq} is absent but entry {later} is stored")]
                return []
            try:
                entry = _entry(seq, raw)
            except (TimelineError, ValueError, KeyError, TypeError) as exc:
                return [PolicyFinding(seq, "altered", f"unreadable: {exc}")]
            if entry.prev_hash != prev:
                return [
                    PolicyFinding(seq, "altered", f"holds prev_hash {entry.prev_hash[:12]}…, chain has {prev[:12]}…")
                ]
            if canonical_bytes(orjson.loads(raw)).decode() != raw:
                return [PolicyFinding(seq, "altered", "its bytes are not the canonical form the engine writes")]
            prev, seq = entry.hash, seq + 1


def _name(seq: int) -> str:
    return f"{PREFIX}{seq:06d}"


def _entry(seq: int, raw: str) -> PolicyEntry:
    content = orjson.loads(raw)
    if content["seq"] != seq:
        raise ValueError(f"entry {seq} names itself {content['seq']}")
    try:
        policy = Policy.model_validate(content["policy"])
    except ValueError as exc:
        raise ConfigurationError(f"published policy entry {seq} is not a valid policy: {exc}") from None
    if policy.id != content["id"]:
        raise ValueError(f"entry {seq} names policy {content['id']} but holds {policy.id}")
    version = PolicyVersion(
        policy,
        dt.datetime.fromisoformat(content["effective_from"]),
        dt.datetime.fromisoformat(content["recorded_at"]),
    )
    return PolicyEntry(seq, version, content["prev_hash"], chain_hash(raw.encode()))
