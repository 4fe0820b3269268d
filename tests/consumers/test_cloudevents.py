"""The CloudEvents envelope of a stored event: attributes, PII markers, round trip."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import orjson
import pytest

from timeline.consumers.cloudevents import (
    CONTENT_TYPE,
    NotACloudEvent,
    parse,
    redacted,
    schema_file,
    source_uri,
    stored_to_bytes,
    to_bytes,
    to_cloudevent,
)
from timeline.domain.events import EVENT_TYPES
from timeline.domain.recorded import ENCRYPTED, ERASED, RecordedEvent

pytestmark = pytest.mark.timeout(30)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
# CloudEvents 1.0 core context attributes; every other attribute is an extension.
CORE = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data"}


def recorded(event_type: str = "customer.registered", data: dict | None = None, **kw) -> RecordedEvent:
    fields = dict(
        position=42,
        customer_id="C000123",
        version=1,
        event_id=uuid.UUID("0b6f7d1e-0000-4000-8000-000000000001"),
        type=event_type,
        schema_version=1,
        occurred_at=dt.datetime(2025, 3, 1, 1, 30, tzinfo=dt.UTC),
        recorded_at=dt.datetime(2025, 3, 1, 2, 0, 0, 123456, tzinfo=dt.UTC),
        source="core-banking",
        actor="RM007",
        data=data
        if data is not None
        else {
            "name": dict(ENCRYPTED),
            "birth_date": dict(ENCRYPTED),
            "phone": dict(ENCRYPTED),
            "branch_id": "BR001",
            "relationship_manager": "RM001",
            "segment": "individual",
        },
        prev_hash="0" * 64,
        hash="a" * 64,
    )
    fields.update(kw)
    return RecordedEvent(**fields)


def test_the_envelope_maps_every_field():
    ce = to_cloudevent(recorded())
    assert ce["specversion"] == "1.0"
    assert ce["id"] == "0b6f7d1e-0000-4000-8000-000000000001"
    assert ce["type"] == "customer.registered"
    assert ce["subject"] == "C000123"
    assert ce["source"] == "urn:timeline:core-banking"
    assert ce["time"] == "2025-03-01T01:30:00Z"
    assert ce["datacontenttype"] == "application/json"
    assert ce["dataschema"] == "urn:timeline:schemas:published/customer.registered.v1.json"
    assert ce["position"] == 42 and ce["streamversion"] == 1 and ce["schemaversion"] == 1
    assert ce["recordedat"] == "2025-03-01T02:00:00.123456Z"
    assert ce["actor"] == "RM007" and ce["partitionkey"] == "C000123"
    assert CONTENT_TYPE == "application/cloudevents+json"


def test_extension_names_follow_the_spec_and_do_not_shadow_core_attributes():
    ce = to_cloudevent(recorded())
    for name in set(ce) - CORE:
        assert re.fullmatch(r"[a-z0-9]{1,20}", name), name


def test_every_type_names_its_published_data_schema_file_by_its_id():
    for event_type in EVENT_TYPES:
        ce = to_cloudevent(recorded(event_type, data={}))
        assert schema_file(ce) == f"published/{event_type}.v1.json"
        path = SCHEMAS / schema_file(ce)
        assert orjson.loads(path.read_bytes())["$id"] == ce["dataschema"]


def test_a_dataschema_under_another_base_is_not_a_schema_file():
    ce = to_cloudevent(recorded(), schema_base="https://schemas.bank.example/timeline/")
    assert ce["dataschema"] == "https://schemas.bank.example/timeline/published/customer.registered.v1.json"
    assert schema_file(ce, "https://schemas.bank.example/timeline/") == "published/customer.registered.v1.json"
    with pytest.raises(NotACloudEvent, match="not under urn:timeline:schemas:"):
        schema_file(ce)


def test_no_source_and_no_actor():
    ce = to_cloudevent(recorded(source=None, actor=None))
    assert ce["source"] == "urn:timeline" and "actor" not in ce
    assert parse(to_bytes(recorded(source=None, actor=None))).source is None


def test_odd_sources_stay_a_valid_uri_and_round_trip():
    ce = to_cloudevent(recorded(source="CRM / 网点 #7"))
    assert " " not in ce["source"] and "#" not in ce["source"]
    assert parse(ce).source == "CRM / 网点 #7"
    assert source_uri("a:b") == "urn:timeline:a%3Ab"


def test_plaintext_pii_is_never_published():
    """A keyed reader's event (PII opened) still goes out with markers only."""
    opened = recorded(
        data={
            "name": "欧阳娜娜",
            "birth_date": "1961-07-19",
            "phone": "+86 139 1234 5678",
            "branch_id": "BR001",
            "relationship_manager": "RM001",
            "segment": "individual",
        }
    )
    body = to_bytes(opened)
    for value in ("欧阳娜娜", "1961-07-19", "139 1234"):
        assert value.encode() not in body
    data = orjson.loads(body)["data"]
    assert data["name"] == {"$encrypted": True} and data["branch_id"] == "BR001"


def test_erased_markers_are_kept():
    data = {"phone": dict(ERASED), "risk_preference": "balanced"}
    assert redacted("customer.profile_updated", data) == data
    assert redacted("deposit.made", {"amount": "1.00"}) == {"amount": "1.00"}


def test_parse_is_the_inverse_of_to_bytes():
    event = recorded()
    assert parse(to_bytes(event)) == event
    assert parse(to_bytes(event).decode()) == event


def test_parse_rejects_what_is_not_a_cloudevent():
    for bad in (b"not json", b"[]", b'{"specversion": "0.3"}', b'{"specversion": "1.0", "id": "x"}'):
        with pytest.raises(NotACloudEvent):
            parse(bad)


def test_the_relays_fast_path_gives_the_same_bytes_as_the_decoded_event(engine, clock):
    """stored_to_bytes (straight from the stored JSON) == to_bytes(decode(...)), for every kind of row."""
    from tests.factories import deposit, erased, event, registered, visit
    from timeline.application.codec import decode
    from timeline.application.keyring import KeyRing

    events = [
        registered("C1", name="欧阳娜娜"),
        registered("C2", phone="+86 139 1234 5678"),
        deposit("C1", amount="12.50"),
        visit("C2", at="2025-01-03T09:00:00.250+08:00", notes="带了礼品"),
        event("customer.profile_updated", "C1", "2025-02-01T09:00:00Z", {"phone": "+86 186 5555 0147"},
              source="CRM / 网点 #7", actor="RM007"),
        erased("C2"),
    ]  # fmt: skip
    outcomes = list(engine.ingestor(clock=clock).ingest(list(enumerate(events, 1))))
    assert [o.status for o in outcomes] == ["accepted"] * len(events)
    rows = engine.store.read_log(0, 100)
    keys = KeyRing(engine.store, None).keys({r.customer_id for r in rows})
    assert keys["C2"].erased and not keys["C1"].erased
    for row in rows:
        erased_now = keys[row.customer_id].erased
        fast = stored_to_bytes(row, erased_now)
        assert fast == to_bytes(decode(row, None, erased_now)), row.position
        assert b"\\u" not in fast and "欧阳娜娜".encode() not in fast and b"1234 5678" not in fast
    by_customer = {parse(stored_to_bytes(r, keys[r.customer_id].erased)).customer_id: r for r in rows[:2]}
    assert orjson.loads(stored_to_bytes(by_customer["C2"], True))["data"]["name"] == {"$erased": True}
    assert orjson.loads(stored_to_bytes(by_customer["C1"], False))["data"]["name"] == {"$encrypted": True}
