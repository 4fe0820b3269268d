"""schemas/asyncapi.json: current, well-formed, and pointing only at schema files that exist."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.consumers.pipeline import ingest, relay_once
from tests.jsonschemas import data_errors, message_errors
from tests.kafka import read_topic
from timeline.consumers.cloudevents import ASYNCAPI_FILE, message_name, render_asyncapi, schema_file, to_cloudevent
from timeline.domain.events import EVENT_TYPES, PII_FIELDS
from timeline.domain.recorded import ENCRYPTED, ERASED, RecordedEvent
from timeline.synthetic.generate import generate_branch

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
        "schemas/asyncapi.json is out of date: python -m timeline.consumers.cloudevents > schemas/asyncapi.json"
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
        assert path.is_relative_to(SCHEMAS) and path.is_file(), ref
        resolve(json.loads(path.read_text(encoding="utf-8")), pointer)
        external.add(path.relative_to(SCHEMAS).as_posix())
    assert external == {f"published/{t}.v1.json" for t in EVENT_TYPES}


def test_each_message_refers_to_the_published_data_schema_its_dataschema_names(doc):
    for event_type in EVENT_TYPES:
        specific = doc["components"]["messages"][message_name(event_type)]["payload"]["allOf"][1]["properties"]
        ce = {"dataschema": specific["dataschema"]["const"]}
        assert specific["data"] == {"$ref": f"./{schema_file(ce)}"}
        assert json.loads((SCHEMAS / schema_file(ce)).read_text(encoding="utf-8"))["$id"] == ce["dataschema"]


def test_a_published_envelope_fits_its_message_with_references_resolved():
    ce = to_cloudevent(registration())
    assert message_errors(ce) == [] and data_errors(ce) == []


def test_a_message_not_as_published_does_not_fit():
    ce = to_cloudevent(registration())
    plaintext = {**ce, "data": {**ce["data"], "name": "王小明"}}
    assert message_errors(plaintext) and data_errors(plaintext)
    assert message_errors({**ce, "time": "yesterday"})  # formats are checked
    assert message_errors({**ce, "type": "deposit.made"})
    assert message_errors({**ce, "dataschema": "urn:timeline:schemas:customer.registered.v1.json"})


def registration() -> RecordedEvent:
    return RecordedEvent(
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


@pytest.mark.timeout(120)
def test_every_relayed_message_of_a_generated_history_fits_its_dataschema_and_its_asyncapi_message(
    engine, kafka_broker, topic
):
    """The issue's acceptance test: a history with every event type (an erasure and referral qualifications
    among them) goes through ingest, the relay and a real broker; every message read back validates."""
    ingest(engine, list(generate_branch(30, 1, 1, dt.date(2025, 12, 31))))
    published = relay_once(engine, kafka_broker, topic)
    messages = [json.loads(r.value) for r in read_topic(kafka_broker.bootstrap, topic)]
    assert len(messages) == published == len(engine.store.read_log(0, 100_000))
    assert {ce["type"] for ce in messages} == set(EVENT_TYPES)
    markers = {json.dumps(v) for ce in messages for k, v in ce["data"].items() if k in PII_FIELDS[ce["type"]]}
    assert markers == {json.dumps(ENCRYPTED), json.dumps(ERASED)}
    failures = [error for ce in messages for error in data_errors(ce) + message_errors(ce)]
    assert failures == [], f"{len(failures)} failures, e.g. {failures[:3]}"
