"""Stored form of an event: canonical bytes, sealed PII and the hash chain.

The stored state is canonical JSON (sorted keys, no spaces, UTF-8) holding
the envelope, ``recorded_at``, the data with PII fields sealed, and
``prev_hash`` — the hash of the customer's previous event. An event's hash is
SHA-256 of its stored bytes, so it covers the previous hash too: altering,
inserting or removing any event breaks the chain from there on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from uuid import UUID, SafeUUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from timeline.application.ports import StoredRow
from timeline.application.sealing import is_sealed, open_sealed, seal
from timeline.domain.errors import CorruptEvent, RejectedEvent
from timeline.domain.events import PII_FIELDS, Envelope, parse_event
from timeline.domain.recorded import ENCRYPTED, ERASED, RecordedEvent

GENESIS_HASH = "0" * 64
STATE_FORMAT = 1
_PII_OF_TYPE = {t: fields for t, fields in PII_FIELDS.items() if fields}
"""The PII fields of the types that have any."""


def canonical_bytes(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes as ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, an order of magnitude faster."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def chain_hash(state: bytes) -> str:
    return hashlib.sha256(state).hexdigest()


def content_of(event: Envelope, event_id: UUID) -> dict[str, Any]:
    """The canonical content of an incoming event: what duplicates are compared on.

    Instants are UTC text (the models hold UTC, which pydantic writes with
    ``Z``, as :func:`timeline.domain.recorded.iso` does), money two-place text,
    absent and null optional data fields are the same; ``recorded_at`` is not
    content. One ``model_dump`` of the whole envelope: a third cheaper than
    assembling it field by field.
    """
    content = event.model_dump(mode="json")
    if event_id is not event.event_id:
        content["event_id"] = str(event_id)
    data = content["data"]
    if None in data.values():
        content["data"] = {k: v for k, v in data.items() if v is not None}
    return content


def comparable(content: dict[str, Any], drop_pii: bool) -> dict[str, Any]:
    """Content for a duplicate check; PII is left out once a customer is erased."""
    if not drop_pii:
        return content
    pii = PII_FIELDS.get(content["type"], frozenset())
    return {**content, "data": {k: v for k, v in content["data"].items() if k not in pii}}


def encode(content: dict[str, Any], recorded_at: str, prev_hash: str, dek: bytes | None) -> tuple[bytes, str]:
    """Stored bytes and chain hash of one event; PII sealed under the customer's key.

    ``recorded_at`` is already in canonical text (:func:`timeline.domain.recorded.iso`): one per batch.
    """
    data = content["data"]
    fields = _PII_OF_TYPE.get(content["type"])
    if fields is not None and not fields.isdisjoint(data):
        if dek is None:
            raise RejectedEvent(
                f"customer {content['customer_id']} has no data key to seal this event's personal data, though "
                "no erasure is stored: the key table was changed outside the engine; run `timeline verify`"
            )
        event_id = UUID(content["event_id"])
        cipher = AESGCM(dek)
        data = {k: (seal(cipher, event_id, k, v) if k in fields else v) for k, v in data.items()}
    state = canonical_bytes(
        {
            **content,
            "data": data,
            "recorded_at": recorded_at,
            "prev_hash": prev_hash,
            "format": STATE_FORMAT,
        }
    )
    return state, chain_hash(state)


def decode(row: StoredRow, dek: bytes | None, erased: bool, with_hash: bool = True) -> RecordedEvent:
    """A stored row as a reader sees it: PII opened, or marked erased or encrypted.

    Projections never read the chain hash; ``with_hash=False`` leaves it empty and saves a SHA-256 per event.
    Readers decode every event of the store (``state --all``), so this stays lean: positional
    construction, instants parsed in C, and the event id through :func:`event_uuid`.

    Bytes that are not an event as the engine writes it (not JSON, not an object, a field missing or of
    the wrong type, a sealed field that does not open) raise :class:`CorruptEvent` naming the row: the one
    place every reader (states, history, ingestion, qualification, the relay, verify) learns of it.
    """
    try:
        obj = orjson.loads(row.state)
        if type(obj) is not dict:
            raise CorruptEvent(row.customer_id, row.version, "not a JSON object")
        kind = obj["type"]
        event_id = event_uuid(obj["event_id"])
        data = obj["data"]
        if type(data) is not dict:
            raise CorruptEvent(row.customer_id, row.version, "its data is not a JSON object")
        if PII_FIELDS.get(kind):
            data = {k: _open(v, dek, erased, event_id, k) for k, v in data.items()}
        event = RecordedEvent(
            row.position,
            obj["customer_id"],
            row.version,
            event_id,
            kind,
            obj["schema_version"],
            _instant(obj["occurred_at"]),
            _instant(obj["recorded_at"]),
            obj["source"],
            obj["actor"],
            data,
            obj["prev_hash"],
            chain_hash(row.state) if with_hash else "",
        )
    except KeyError as exc:
        raise CorruptEvent(row.customer_id, row.version, f"no {exc.args[0]!r} field") from None
    except InvalidTag:
        raise CorruptEvent(row.customer_id, row.version, "a sealed field does not decrypt") from None
    except orjson.JSONDecodeError:
        raise CorruptEvent(row.customer_id, row.version, "not JSON") from None
    except (ValueError, TypeError, AttributeError):
        raise CorruptEvent(row.customer_id, row.version, "a field has the wrong type or value") from None
    if not (
        type(kind) is str
        and event.customer_id == row.customer_id
        and type(event.schema_version) is int
        and type(event.prev_hash) is str
        and event.occurred_at.tzinfo is not None
        and event.recorded_at.tzinfo is not None
        and (event.source is None or type(event.source) is str)
        and (event.actor is None or type(event.actor) is str)
    ):
        raise CorruptEvent(row.customer_id, row.version, _shape_problem(event, row))
    return event


def _shape_problem(event: RecordedEvent, row: StoredRow) -> str:
    """Which envelope field of a decoded row is wrong (only asked once one is)."""
    if event.customer_id != row.customer_id:
        return f"it names customer {event.customer_id!r}"
    for name, ok in (
        ("type", type(event.type) is str),
        ("schema_version", type(event.schema_version) is int),
        ("prev_hash", type(event.prev_hash) is str),
        ("occurred_at", event.occurred_at.tzinfo is not None),
        ("recorded_at", event.recorded_at.tzinfo is not None),
        ("source", event.source is None or type(event.source) is str),
    ):
        if not ok:
            return f"its {name} has the wrong type or value"
    return "its actor has the wrong type or value"


_instant = dt.datetime.fromisoformat

_PII_STAND_INS = {"name": "x", "birth_date": "2000-01-01", "phone": "+1 000"}
"""Valid values put in place of sealed, erased or encrypted PII, so that the rest of an event can be validated."""

STORED_VALUE_ERRORS = (ArithmeticError, ValueError, TypeError, KeyError, AttributeError, IndexError)
"""What a projection raises when an event's data holds a value no model allows (a decimal that is not one...)."""


def first_invalid(history: list[RecordedEvent]) -> CorruptEvent | None:
    """The first decoded event that the event models refuse, as the :class:`CorruptEvent` to raise.

    :func:`decode` checks only the envelope (every read pays for it); the values inside ``data`` are validated
    here, when a projection has failed on a history, to name the stored event that made it fail.
    """
    for event in history:
        pii = PII_FIELDS.get(event.type, frozenset())
        data = {k: _PII_STAND_INS.get(k, v) if k in pii and type(v) is dict else v for k, v in event.data.items()}
        try:
            parse_event({**event.envelope(), "data": data})
        except RejectedEvent as exc:
            return CorruptEvent(event.customer_id, event.version, f"its content breaks the event model: {exc}")
    return None


def event_uuid(text: str) -> UUID:
    """``UUID(text)``, three times as fast for the canonical form every stored event id has.

    ``UUID.__init__`` parses and checks in Python (a microsecond and a half, a third of decoding an event);
    32 ASCII hex digits in the 8-4-4-4-12 layout need only ``int(digits, 16)``. Anything else goes through
    ``UUID`` itself, which accepts or rejects it as always.
    """
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        digits = text.replace("-", "")
        if len(digits) == 32 and digits.isascii() and digits.isalnum():
            try:
                value = int(digits, 16)
            except ValueError:
                return UUID(text)
            made = _new_uuid(UUID)
            _set(made, "int", value)
            _set(made, "is_safe", _UNKNOWN)
            return made
    return UUID(text)


_new_uuid = object.__new__
_set = object.__setattr__
_UNKNOWN = SafeUUID.unknown


def _open(value: Any, dek: bytes | None, erased: bool, event_id: UUID, field: str) -> Any:
    if not is_sealed(value):
        return value
    if dek is not None:
        return open_sealed(dek, event_id, field, value)
    return dict(ERASED) if erased else dict(ENCRYPTED)
