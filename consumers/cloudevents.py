"""Stored events as CloudEvents 1.0 in structured mode (``application/cloudevents+json``), and back.

Pure functions, no I/O: the relay (:mod:`timeline.consumers.relay`) publishes with
:func:`to_bytes`, and a subscriber reads a message back with :func:`parse`.

Mapping of a :class:`~timeline.domain.recorded.RecordedEvent`:

============== ===============================================================
attribute      value
============== ===============================================================
specversion    ``"1.0"``
id             ``event_id`` (the idempotency key: a consumer drops repeats by it)
source         ``urn:timeline`` or ``urn:timeline:<source>`` (percent-encoded)
type           the event type, e.g. ``deposit.made``
subject        ``customer_id`` (also the Kafka message key)
time           ``occurred_at`` (business time), RFC 3339 in UTC
datacontenttype ``application/json``
dataschema     ``urn:timeline:schemas:published/deposit.made.v1.json``: the
               schema of ``data`` as published, the file
               ``schemas/published/deposit.made.v1.json`` (whose ``$id`` it is).
               CloudEvents requires an absolute URI here, so the file's path
               under ``schemas/`` is put under a base (``schema_base``).
data           the event's data; PII fields never in clear: ``{"$encrypted": true}``
               (the relay has no keys) or ``{"$erased": true}`` (key destroyed)
============== ===============================================================

Extension attributes (lowercase alphanumeric, as the spec requires):
``position`` (global log position, integer, increasing in commit order),
``recordedat`` (system time, RFC 3339 UTC), ``schemaversion``,
``streamversion`` (1-based position in the customer's stream: a consumer sees
a gap if it is not one more than the last it saw), ``partitionkey`` (the
Partitioning extension: ``customer_id``), ``actor`` (when set), ``hash`` and
``prevhash`` (the event's chain hash and its predecessor's, as ``timeline
verify`` checks them).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any
from urllib.parse import quote, unquote
from uuid import UUID

import orjson

from timeline.application.codec import STATE_FORMAT, chain_hash, decode
from timeline.application.ports import StoredRow
from timeline.application.sealing import is_sealed
from timeline.domain.events import PII_FIELDS
from timeline.domain.recorded import ENCRYPTED, ERASED, RecordedEvent, iso
from timeline.domain.schemas import SCHEMA_BASE, published_path

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
"""The Kafka ``content-type`` header of a structured-mode message."""
DATA_CONTENT_TYPE = "application/json"
SOURCE_BASE = "urn:timeline"

_MARKERS = (ENCRYPTED, ERASED)


class NotACloudEvent(ValueError):
    """The message is not a CloudEvent this module wrote."""


@functools.lru_cache(maxsize=4096)
def source_uri(source: str | None) -> str:
    return SOURCE_BASE if source is None else f"{SOURCE_BASE}:{quote(source, safe='')}"


@functools.lru_cache(maxsize=1024)
def dataschema_uri(event_type: str, schema_version: int, schema_base: str = SCHEMA_BASE) -> str:
    return schema_base + published_path(event_type, schema_version)


def redacted(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The data with every PII field a marker: a plaintext value (a keyed reader's) becomes ``$encrypted``."""
    pii = PII_FIELDS.get(event_type)
    if not pii or not (pii & data.keys()):
        return data
    return {k: (v if k not in pii or v in _MARKERS else dict(ENCRYPTED)) for k, v in data.items()}


def _envelope(
    event_id: str,
    source: str | None,
    event_type: str,
    customer_id: str,
    time: str,
    schema_version: int,
    schema_base: str,
    position: int,
    recorded_at: str,
    version: int,
    hash: str,
    prev_hash: str,
    actor: str | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The one place the attributes are laid out (both encoders share it, so their bytes agree)."""
    ce: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": source_uri(source),
        "type": event_type,
        "subject": customer_id,
        "time": time,
        "datacontenttype": DATA_CONTENT_TYPE,
        "dataschema": dataschema_uri(event_type, schema_version, schema_base),
        "position": position,
        "recordedat": recorded_at,
        "schemaversion": schema_version,
        "streamversion": version,
        "partitionkey": customer_id,
        "hash": hash,
        "prevhash": prev_hash,
        "data": data,
    }
    if actor is not None:
        ce["actor"] = actor
    return ce


def to_cloudevent(event: RecordedEvent, schema_base: str = SCHEMA_BASE) -> dict[str, Any]:
    """The structured-mode CloudEvent of one stored event (PII never in clear)."""
    return _envelope(
        str(event.event_id), event.source, event.type, event.customer_id, iso(event.occurred_at),
        event.schema_version, schema_base, event.position, iso(event.recorded_at), event.version,
        event.hash, event.prev_hash, event.actor, redacted(event.type, event.data),
    )  # fmt: skip


def to_bytes(event: RecordedEvent, schema_base: str = SCHEMA_BASE) -> bytes:
    """UTF-8 JSON of :func:`to_cloudevent`: the Kafka message value."""
    return orjson.dumps(to_cloudevent(event, schema_base))


def stored_to_bytes(row: StoredRow, erased: bool, schema_base: str = SCHEMA_BASE) -> bytes:
    """``to_bytes(codec.decode(row, None, erased))``, byte for byte, straight from the stored JSON.

    The relay's hot path: the stored state already holds the canonical UTC
    texts, so no datetime, UUID or :class:`RecordedEvent` is built (three
    times cheaper). Sealed PII becomes a marker; a state of another format
    goes the long way.
    """
    obj = orjson.loads(row.state)
    if obj.get("format") != STATE_FORMAT:
        return to_bytes(decode(row, None, erased), schema_base)
    event_type = obj["type"]
    data = obj["data"]
    pii = PII_FIELDS.get(event_type)
    if pii:
        marker = ERASED if erased else ENCRYPTED
        data = {
            k: (dict(marker) if is_sealed(v) else v if k not in pii or v in _MARKERS else dict(ENCRYPTED))
            for k, v in data.items()
        }
    return orjson.dumps(
        _envelope(
            obj["event_id"],
            obj["source"],
            event_type,
            obj["customer_id"],
            obj["occurred_at"],
            obj["schema_version"],
            schema_base,
            row.position,
            obj["recorded_at"],
            row.version,
            chain_hash(row.state),
            obj["prev_hash"],
            obj["actor"],
            data,
        )  # fmt: skip
    )


def parse(message: bytes | str | dict[str, Any]) -> RecordedEvent:
    """A message value (or its decoded JSON) back into the event as the relay read it.

    PII fields stay markers: a consumer never gets personal data from the topic.
    """
    if isinstance(message, dict):
        ce = message
    else:
        try:
            ce = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise NotACloudEvent(f"not JSON: {exc}") from None
    if not isinstance(ce, dict) or ce.get("specversion") != SPEC_VERSION:
        raise NotACloudEvent(f"not a CloudEvents {SPEC_VERSION} structured event")
    try:
        source = ce["source"]
        if source == SOURCE_BASE:
            origin = None
        elif source.startswith(SOURCE_BASE + ":"):
            origin = unquote(source[len(SOURCE_BASE) + 1 :])
        else:
            origin = source
        return RecordedEvent(
            position=int(ce["position"]),
            customer_id=ce["subject"],
            version=int(ce["streamversion"]),
            event_id=UUID(ce["id"]),
            type=ce["type"],
            schema_version=int(ce["schemaversion"]),
            occurred_at=_instant(ce["time"]),
            recorded_at=_instant(ce["recordedat"]),
            source=origin,
            actor=ce.get("actor"),
            data=ce.get("data") or {},
            prev_hash=ce.get("prevhash", ""),
            hash=ce.get("hash", ""),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotACloudEvent(f"missing or malformed attribute: {exc!r}") from None


def schema_file(ce: dict[str, Any], schema_base: str = SCHEMA_BASE) -> str:
    """The path under ``schemas/`` of the file ``dataschema`` names, e.g. ``published/deposit.made.v1.json``."""
    uri = ce.get("dataschema")
    if not isinstance(uri, str) or not uri.startswith(schema_base):
        raise NotACloudEvent(f"dataschema {uri!r} is not under {schema_base}")
    return uri[len(schema_base) :]


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return moment.astimezone(dt.UTC)


# -- AsyncAPI ---------------------------------------------------------------------------------

ASYNCAPI_FILE = "asyncapi.json"
TOPIC_BINDING_VERSION = "0.5.0"
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


def message_name(event_type: str) -> str:
    """``customer.profile_updated`` → ``customerProfileUpdated`` (an AsyncAPI component key)."""
    words = event_type.replace("_", ".").split(".")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def render_asyncapi(topic: str = "customer-events", partitions: int = 3) -> str:
    """The AsyncAPI 3.0 document of the topic, as checked in at ``schemas/asyncapi.json``.

    One message per event type: the CloudEvent envelope, with ``data`` referring to the type's
    published-data schema (``published/<type>.v1.json`` next to it, the file its ``dataschema`` names).
    """
    from timeline.domain.events import EVENT_TYPES

    messages: dict[str, Any] = {}
    for event_type in EVENT_TYPES:
        messages[message_name(event_type)] = {
            "name": event_type,
            "title": f"{event_type} (CloudEvent)",
            "contentType": CONTENT_TYPE,
            "headers": {"$ref": "#/components/schemas/KafkaHeaders"},
            "bindings": {
                "kafka": {"key": {"$ref": "#/components/schemas/CustomerId"}, "bindingVersion": TOPIC_BINDING_VERSION}
            },
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "dataschema": {"const": dataschema_uri(event_type, 1)},
                            "data": {"$ref": f"./{published_path(event_type)}"},
                        },
                    },
                ]
            },
        }
    doc = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "timeline customer events",
            "version": "1.0.0",
            "description": (
                "Every stored event of the timeline engine, published by `timeline relay` in global order "
                "(the event store is the outbox), one CloudEvents 1.0 event per message in structured mode. "
                "Delivery is at least once: a consumer drops repeats by `id` (the event id). The message key "
                "is the customer id, so one customer's events stay in order on one partition; `streamversion` "
                "counts them (1, 2, 3, ...) and `position` orders all events globally. PII is never published: "
                'personal fields read {"$encrypted": true} (the relay holds no keys) or {"$erased": true} '
                "(the customer was erased). `dataschema` is `urn:timeline:schemas:` followed by the path, "
                "relative to this document, of the JSON Schema of `data` as published (that file's `$id`), "
                "e.g. `published/deposit.made.v1.json`."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "docker-compose.yml: Apache Kafka (KRaft); set TIMELINE_KAFKA for another",
            },
        },
        "channels": {
            "customerEvents": {
                "address": topic,
                "description": "Topic name configurable (`timeline relay --topic`, TIMELINE_TOPIC).",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {
                    "kafka": {"topic": topic, "partitions": partitions, "bindingVersion": TOPIC_BINDING_VERSION}
                },
            }
        },
        "operations": {
            "publishCustomerEvents": {
                "action": "send",
                "summary": "The relay publishes each stored event once the store has committed it.",
                "channel": {"$ref": "#/channels/customerEvents"},
                "messages": [{"$ref": f"#/channels/customerEvents/messages/{name}"} for name in messages],
            }
        },
        "components": {
            "messages": messages,
            "schemas": {
                "CustomerId": {"type": "string", "pattern": CUSTOMER_ID_PATTERN},
                "KafkaHeaders": {
                    "type": "object",
                    "properties": {"content-type": {"const": CONTENT_TYPE}},
                    "required": ["content-type"],
                },
                "CloudEvent": _cloudevent_schema(),
            },
        },
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _cloudevent_schema() -> dict[str, Any]:
    from timeline.domain.events import EVENT_TYPES

    instant = {"type": "string", "format": "date-time"}
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    return {
        "type": "object",
        "description": "CloudEvents 1.0, structured mode; extension attributes are lowercase alphanumeric.",
        "properties": {
            "specversion": {"const": SPEC_VERSION},
            "id": {"type": "string", "format": "uuid", "description": "The event id (idempotency key)."},
            "source": {
                "type": "string",
                "format": "uri-reference",
                "description": "urn:timeline, or urn:timeline:<percent-encoded source system>.",
            },
            "type": {"enum": list(EVENT_TYPES)},
            "subject": {"$ref": "#/components/schemas/CustomerId"},
            "time": {**instant, "description": "occurred_at: business time, UTC."},
            "datacontenttype": {"const": DATA_CONTENT_TYPE},
            "dataschema": {"type": "string", "format": "uri", "pattern": "^" + SCHEMA_BASE.replace(".", r"\.")},
            "position": {"type": "integer", "minimum": 1, "description": "Global log position (commit order)."},
            "recordedat": {**instant, "description": "recorded_at: when the engine stored it, UTC."},
            "schemaversion": {"type": "integer", "minimum": 1},
            "streamversion": {
                "type": "integer",
                "minimum": 1,
                "description": "1-based position in the customer's stream.",
            },
            "partitionkey": {"$ref": "#/components/schemas/CustomerId"},
            "actor": {"type": "string"},
            "hash": {**sha256, "description": "The event's hash-chain link (timeline verify)."},
            "prevhash": {**sha256, "description": "The hash of the customer's previous event (zeros for the first)."},
            "data": {"type": "object"},
        },
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "dataschema",
            "position",
            "recordedat",
            "schemaversion",
            "streamversion",
            "partitionkey",
            "hash",
            "prevhash",
            "data",
        ],
    }


if __name__ == "__main__":  # python -m timeline.consumers.cloudevents > schemas/asyncapi.json
    import sys

    sys.stdout.write(render_asyncapi())
