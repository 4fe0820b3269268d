"""The checked-in JSON Schemas are exactly what the pydantic models generate, and say what is sent and published.

Input schemas (``schemas/<type>.v1.json``) describe what a sender sends, PII in clear; published-data schemas
(``schemas/published/<type>.v1.json``) describe a relayed message's ``data``, PII as markers only.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.conftest import KEK
from tests.factories import deposit, erased, event, registered
from tests.jsonschemas import data_errors, data_validator
from timeline.application.keyring import KeyRing
from timeline.consumers.cloudevents import stored_to_bytes
from timeline.crypto import KeyWrapper
from timeline.domain.errors import RejectedEvent
from timeline.domain.events import EVENT_TYPES, PII_FIELDS, parse_event
from timeline.domain.recorded import ENCRYPTED, ERASED
from timeline.domain.schemas import published_id, published_path, render_schemas, schema_filename
from timeline.engine import Engine
from timeline.store import open_store

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
PII_TYPES = [t for t in EVENT_TYPES if PII_FIELDS[t]]


def test_checked_in_schemas_match_the_event_models():
    rendered = render_schemas()
    files = [*SCHEMAS.rglob("*.v*.json"), SCHEMAS / "policy.schema.json"]
    on_disk = {p.relative_to(SCHEMAS).as_posix(): p.read_text(encoding="utf-8") for p in files}
    stale = sorted(name for name in rendered if on_disk.get(name) != rendered[name])
    extra = sorted(set(on_disk) - set(rendered))
    assert not stale and not extra, (
        f"schemas/ is out of date (stale: {stale}, unknown: {extra}); run `timeline schemas export`"
    )


def test_schemas_export_writes_every_file_of_schemas(tmp_path):
    timeline = Path(sys.executable).with_name("timeline")
    done = subprocess.run([timeline, "schemas", "export", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = {p.relative_to(tmp_path).as_posix(): p.read_text(encoding="utf-8") for p in tmp_path.rglob("*.json")}
    assert written == render_schemas()
    assert {f"published/{t}.v1.json" for t in EVENT_TYPES} <= set(written)


def test_every_event_type_has_a_draft_2020_12_schema_rejecting_unknown_fields():
    for event_type in EVENT_TYPES:
        schema = json.loads(render_schemas()[f"{event_type}.v1.json"])
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
        assert schema["properties"]["type"]["const"] == event_type


def test_pii_fields_are_marked_in_the_schema():
    schema = json.loads(render_schemas()["customer.registered.v1.json"])
    data = schema["$defs"]["CustomerRegistered"]["properties"]
    assert {k for k, v in data.items() if v.get("x-pii")} == {"name", "birth_date", "phone"}


def test_every_event_type_has_a_published_data_schema_whose_id_is_its_dataschema():
    for event_type in EVENT_TYPES:
        schema = json.loads(render_schemas()[published_path(event_type)])
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == published_id(event_type) == f"urn:timeline:schemas:published/{event_type}.v1.json"
        assert schema["additionalProperties"] is False
        pii = {k for k, v in schema["properties"].items() if v.get("x-pii")}
        assert pii == PII_FIELDS[event_type]
        assert all(schema["properties"][k]["$ref"] == "#/$defs/PiiMarker" for k in pii)


# -- PII markers, as the relay publishes them -------------------------------------------------------------


@pytest.fixture
def published(sqlite_url) -> Iterator[dict[str, list[dict]]]:
    """type → the ``data`` the relay publishes for it: C1 keeps its key (sealed PII), C2 is erased."""
    engine = Engine(open_store(sqlite_url), KeyWrapper(KEK))
    try:
        events = [
            registered("C1"),
            registered("C2", name="Zhang Wei"),
            event("customer.profile_updated", "C1", "2025-02-01T09:00:00Z", {"phone": "+86 186 5555 0147"}),
            event("customer.profile_updated", "C2", "2025-02-01T09:00:00Z", {"phone": "+86 186 5555 0148"}),
            deposit("C1", amount="12.5"),
            erased("C2"),
        ]
        ingestor = engine.ingestor(clock=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        assert {o.status for o in ingestor.ingest(list(enumerate(events, 1)))} == {"accepted"}
        rows = engine.store.read_log(0, 100)
        keys = KeyRing(engine.store, None).keys({r.customer_id for r in rows})
        by_customer: dict[str, list[dict]] = {}
        for row in rows:
            ce = orjson.loads(stored_to_bytes(row, keys[row.customer_id].erased))
            by_customer.setdefault(row.customer_id, []).append(ce)
        yield by_customer
    finally:
        engine.close()


def test_sealed_pii_is_published_as_the_encrypted_marker_and_fits_the_published_schema(published):
    messages = [ce for ce in published["C1"] if ce["type"] in PII_TYPES]
    assert [ce["type"] for ce in messages] == ["customer.registered", "customer.profile_updated"]
    for ce in messages:
        assert all(ce["data"][k] == ENCRYPTED for k in PII_FIELDS[ce["type"]] & ce["data"].keys())
        assert data_errors(ce) == []


def test_erased_pii_is_published_as_the_erased_marker_and_fits_the_published_schema(published):
    messages = [ce for ce in published["C2"] if ce["type"] in PII_TYPES]
    assert [ce["type"] for ce in messages] == ["customer.registered", "customer.profile_updated"]
    for ce in messages:
        assert all(ce["data"][k] == ERASED for k in PII_FIELDS[ce["type"]] & ce["data"].keys())
        assert data_errors(ce) == []


def test_money_is_published_as_two_place_text_and_fits(published):
    (ce,) = [ce for ce in published["C1"] if ce["type"] == "deposit.made"]
    assert ce["data"]["amount"] == "12.50" and data_errors(ce) == []


def test_the_published_schema_refuses_plaintext_pii_a_null_field_and_numeric_money():
    registration = data_validator(published_path("customer.registered"))
    data = {**registered()["data"], "birth_date": dict(ERASED), "phone": dict(ENCRYPTED)}
    assert not registration.is_valid(data)  # the name in clear
    assert registration.is_valid({**data, "name": dict(ENCRYPTED)})
    assert not registration.is_valid({**data, "name": {"$enc": "bm9wZQ"}})  # ciphertext is never published
    deposit_data = data_validator(published_path("deposit.made"))
    assert deposit_data.is_valid({"account_id": "A1", "amount": "12.50", "product": "demand"})
    assert not deposit_data.is_valid({"account_id": "A1", "amount": "12.50", "product": "demand", "term_months": None})
    assert not deposit_data.is_valid({"account_id": "A1", "amount": 12.5, "product": "demand"})


@pytest.mark.parametrize("marker", [ENCRYPTED, ERASED], ids=["encrypted", "erased"])
def test_the_input_schemas_and_ingest_still_refuse_the_markers(marker):
    """A marker is what is published in place of personal data; it is never valid input."""
    for event_type in PII_TYPES:
        example = registered() if event_type == "customer.registered" else None
        data = example["data"] if example else {"phone": "+86 186 5555 0147"}
        for field in PII_FIELDS[event_type]:
            sent = event(event_type, "C1", "2025-02-01T09:00:00Z", {**data, field: dict(marker)})
            assert not data_validator(schema_filename(event_type)).is_valid(sent), (event_type, field)
            with pytest.raises(RejectedEvent, match=field):
                parse_event(sent)
