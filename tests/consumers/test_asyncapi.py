"""schemas/asyncapi.json: current, well-formed, and pointing only at schema files that exist."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.cloudevents import ASYNCAPI_FILE, message_name, render_asyncapi, schema_file, to_cloudevent
from timeline.events import EVENT_TYPES, PII_FIELDS
from timeline.recorded import ENCRYPTED, RecordedEvent

pytestmark = pytest.mark.timeout(30)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DOC_PATH = SCHEMAS / ASYNCAPI_FILE


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(DOC_PATH.read_text(encoding="utf-8"))


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_the_checked_in_document_is_current():
    assert DOC_PATH.read_text(encoding="utf-8") == render_asyncapi(), (
        "schemas/asyncapi.json is out of date: python -m consumers.cloudevents > schemas/asyncapi.json"
    )


def test_it_is_an_asyncapi_3_document_for_the_topic(doc):
    assert doc["asyncapi"] == "3.0.0"
    channel = doc["channels"]["customerEvents"]
    assert channel["address"] == "customer-events"
    assert channel["bindings"]["kafka"]["partitions"] == 3
    assert doc["defaultContentType"] == "application/cloudevents+json"
    assert doc["operations"]["publishCustomerEvents"]["action"] == "send"


def test_every_event_type_has_a_message(doc):
    messages = doc["components"]["messages"]
    assert sorted(m["name"] for m in messages.values()) == sorted(EVENT_TYPES)
    assert set(doc["channels"]["customerEvents"]["messages"]) == {message_name(t) for t in EVENT_TYPES}
    assert len(doc["operations"]["publishCustomerEvents"]["messages"]) == len(EVENT_TYPES)
    assert doc["components"]["schemas"]["CloudEvent"]["properties"]["type"]["enum"] == list(EVENT_TYPES)


def test_every_reference_resolves_and_files_exist(doc):
    external: set[str] = set()
    for ref in refs(doc):
        target, _, pointer = ref.partition("#")
        if not target:
            resolve(doc, pointer)
            continue
        path = (SCHEMAS / target).resolve()
        assert path.parent == SCHEMAS and path.is_file(), ref
        resolve(json.loads(path.read_text(encoding="utf-8")), pointer)
        external.add(path.name)
    assert external == {f"{t}.v1.json" for t in EVENT_TYPES}


def test_a_published_envelope_fits_its_message(doc):
    event = RecordedEvent(
        position=1,
        customer_id="C1",
        version=1,
        event_id=uuid.uuid4(),
        type="customer.registered",
        schema_version=1,
        occurred_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        recorded_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
        source=None,
        actor=None,
        prev_hash="0" * 64,
        hash="1" * 64,
        data={
            "name": dict(ENCRYPTED),
            "birth_date": dict(ENCRYPTED),
            "phone": dict(ENCRYPTED),
            "branch_id": "B1",
            "relationship_manager": "RM1",
            "segment": "individual",
        },
    )
    ce = to_cloudevent(event)
    envelope = doc["components"]["schemas"]["CloudEvent"]
    assert set(envelope["required"]) <= set(ce) <= set(envelope["properties"])
    specific = doc["components"]["messages"]["customerRegistered"]["payload"]["allOf"][1]["properties"]
    assert specific["type"]["const"] == ce["type"] and specific["dataschema"]["const"] == ce["dataschema"]
    assert schema_file(ce) == "customer.registered.v1.json"
    data_schema = specific["data"]
    assert set(data_schema["required"]) <= set(ce["data"]) <= set(data_schema["properties"])
    for name in PII_FIELDS["customer.registered"]:
        assert data_schema["properties"][name] == {"$ref": "#/components/schemas/PiiMarker"}
