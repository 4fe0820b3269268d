"""Keys in ``verify``: each customer's data key must be what its stream says.

A registered customer has a key row from its registration on (the engine
writes both in one transaction); only a stored ``customer.erased`` destroys
it, by nulling it in that event's transaction. The database refuses any other
change, but an administrator can bypass that: a missing or nulled key without
an erasure loses PII silently, a key kept after one leaves erased PII
readable. With the key-encryption key, each key must unwrap and each sealed
field must open (a rewritten key or ciphertext no key can read).
"""

from __future__ import annotations

from typing import Final

import orjson
from cryptography.exceptions import InvalidTag

from timeline.application.ports import KeyWrapping, StoredRow
from timeline.application.sealing import is_sealed, open_sealed
from timeline.domain.errors import ConfigurationError
from timeline.domain.events import PII_FIELDS
from timeline.domain.recorded import ENCRYPTED, RecordedEvent

KEY_KINDS = ("key-missing", "key-not-destroyed", "key-unreadable", "pii-unreadable")


class _NoKeyRow:
    """The customer has no row in the keys table (as opposed to a destroyed key, ``None``)."""

    def __repr__(self) -> str:
        return "NO_KEY_ROW"


NO_KEY_ROW: Final = _NoKeyRow()
KeyRow = bytes | None | _NoKeyRow
Problem = tuple[str, int | None, str | None, str]
"""kind, version, event id, detail: a :class:`timeline.application.verify.Finding` without its customer."""


def key_finding(
    customer_id: str, events: list[RecordedEvent], rows: list[StoredRow], key: KeyRow, wrapper: KeyWrapping | None
) -> Problem | None:
    """What is wrong with the customer's key, given its readable events; ``None`` if nothing."""
    erasure = next((e for e in events if e.type == "customer.erased"), None)
    needs = next((e for e in events if e.type == "customer.registered" or ENCRYPTED in e.data.values()), None)
    if isinstance(key, _NoKeyRow):
        if erasure is not None:
            return _at("key-missing", erasure, "the erased customer's key row was deleted: readers no longer see it")
        if needs is not None:
            return _at("key-missing", needs, "no data key is stored and no erasure: its PII can never be read")
        return None
    if key is None:
        if erasure is None:
            return _at("key-missing", needs, "the data key was destroyed without a stored customer.erased")
        return None
    if erasure is not None:
        return _at("key-not-destroyed", erasure, "a data key is still stored after the customer's erasure")
    if wrapper is None:
        return None
    try:
        dek = wrapper.unwrap(customer_id, key)
    except (ConfigurationError, ValueError):
        return ("key-unreadable", None, None, "the stored data key does not unwrap with the key-encryption key")
    return _unreadable_pii(events, rows, dek)


def _unreadable_pii(events: list[RecordedEvent], rows: list[StoredRow], dek: bytes) -> Problem | None:
    """The first sealed field that does not open with the customer's key."""
    states = {r.version: r.state for r in rows}
    for event in events:
        if ENCRYPTED not in event.data.values() or not PII_FIELDS.get(event.type):
            continue
        for field, value in orjson.loads(states[event.version])["data"].items():
            if not is_sealed(value):
                continue
            try:
                open_sealed(dek, event.event_id, field, value)
            except (InvalidTag, ValueError, TypeError, KeyError):
                return _at("pii-unreadable", event, f"its sealed {field} does not open with the customer's data key")
    return None


def _at(kind: str, event: RecordedEvent | None, detail: str) -> Problem:
    if event is None:
        return (kind, None, None, detail)
    return (kind, event.version, str(event.event_id), detail)
