"""The checked-in JSON Schemas are exactly what the pydantic models generate."""

from __future__ import annotations

import json
from pathlib import Path

from timeline.events import EVENT_TYPES
from timeline.schemas import render_schemas

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_checked_in_schemas_match_the_event_models():
    rendered = render_schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.glob("*.v*.json")}
    stale = sorted(name for name in rendered if on_disk.get(name) != rendered[name])
    extra = sorted(set(on_disk) - set(rendered))
    assert not stale and not extra, (
        f"schemas/ is out of date (stale: {stale}, unknown: {extra}); run `timeline schemas export`"
    )


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
