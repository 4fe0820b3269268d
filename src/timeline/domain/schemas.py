"""JSON Schemas (draft 2020-12) derived from the event models: what a sender sends, and what the relay publishes.

Two schemas per event type, both generated from :mod:`timeline.domain.events` (never written by hand), and
the policy's (``schemas/policy.schema.json``, from :class:`timeline.domain.policy.Policy`):

- ``schemas/<type>.v<N>.json``: the input event, envelope and ``data``, as ``timeline ingest`` accepts it;
  PII fields in clear.
- ``schemas/published/<type>.v<N>.json``: the ``data`` of the published CloudEvent, exactly as the relay
  writes it. Each PII field is a marker (:data:`~timeline.domain.recorded.ENCRYPTED` or
  :data:`~timeline.domain.recorded.ERASED`), never its value; a field the event left out (or sent as ``null``) is
  absent, never ``null``; money is two-place text, dates ``YYYY-MM-DD``. Its ``$id`` is the CloudEvent's
  ``dataschema``: :data:`SCHEMA_BASE` followed by the file's path under ``schemas/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from timeline.domain.events import DATA_MODELS, EVENT_MODELS, PII_FIELDS, SCHEMA_VERSION
from timeline.domain.policy import Policy
from timeline.domain.recorded import ENCRYPTED, ERASED

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "urn:timeline:schemas:"
"""``dataschema`` = this + the schema file's path under ``schemas/`` (CloudEvents wants an absolute URI)."""
PUBLISHED_DIR = "published"
PII_MARKER_DEF = "PiiMarker"
POLICY_SCHEMA = "policy.schema.json"


def schema_filename(event_type: str, version: int = SCHEMA_VERSION) -> str:
    """The input schema's file in ``schemas/``."""
    return f"{event_type}.v{version}.json"


def published_path(event_type: str, version: int = SCHEMA_VERSION) -> str:
    """The published-data schema's path under ``schemas/``, e.g. ``published/deposit.made.v1.json``."""
    return f"{PUBLISHED_DIR}/{schema_filename(event_type, version)}"


def published_id(event_type: str, version: int = SCHEMA_VERSION) -> str:
    """The ``$id`` of the published-data schema, and the ``dataschema`` of the type's messages."""
    return SCHEMA_BASE + published_path(event_type, version)


class _PublishedData(GenerateJsonSchema):
    """Serialization-mode schemas of data as stored and published: a null-valued field is dropped before
    storing (``codec.content_of``), so an optional field is absent or a value, never ``null``, and has no default.
    """

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])


def pii_marker_schema() -> dict[str, Any]:
    """One of the markers a published PII field holds instead of its value."""
    return {
        "description": "A personal field without its value: "
        + " or ".join(f"{json.dumps(m)}" for m in (ENCRYPTED, ERASED))
        + " (the relay holds no keys; the customer was erased).",
        "oneOf": [
            {
                "type": "object",
                "properties": {name: {"const": value} for name, value in marker.items()},
                "required": list(marker),
                "additionalProperties": False,
            }
            for marker in (ENCRYPTED, ERASED)
        ],
    }


def published_schema(event_type: str) -> dict[str, Any]:
    """The schema of a published ``event_type``'s ``data``, from its data model."""
    generated = DATA_MODELS[event_type].model_json_schema(mode="serialization", schema_generator=_PublishedData)
    defs = generated.pop("$defs", {})
    pii = PII_FIELDS[event_type]
    for name in pii:
        generated["properties"][name] = {
            "$ref": f"#/$defs/{PII_MARKER_DEF}",
            "title": generated["properties"][name].get("title", name),
            "x-pii": True,
        }
    if pii:
        defs[PII_MARKER_DEF] = pii_marker_schema()
    generated.pop("title", None)
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": published_id(event_type),
        "title": f"{event_type} data, as published",
        "description": (
            f"The `data` of a published `{event_type}` CloudEvent (its `dataschema` is this `$id`); "
            f"the input event is {schema_filename(event_type)}."
            + (" PII fields (x-pii) are markers, never values." if pii else "")
        ),
        **generated,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _input_schema(event_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": schema_filename(event_type),
        **EVENT_MODELS[event_type].model_json_schema(mode="validation"),
    }
    schema["title"] = event_type
    return schema


def policy_schema() -> dict[str, Any]:
    """The schema of a policy file, as ``timeline whatif --policy`` and ``policy publish`` read it.

    The schema says each field's type and bounds; what spans fields (thresholds strictly ascending from 0,
    the loyal tier one of the tiers, loyal tenure not below established) is checked when a policy is read.
    """
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": SCHEMA_BASE + POLICY_SCHEMA,
        **Policy.model_json_schema(mode="validation"),
    }
    schema["title"] = "timeline policy"
    schema["description"] = (
        "A bank's policy: the numbers of POLICY §4 (tiers, lifecycle windows, points), one version, named by `id`. "
        "Beyond this schema, tier thresholds ascend strictly from 0, `lifecycle.loyal_min_tier` names a tier, "
        "and `lifecycle.loyal_tenure_days` is not below `lifecycle.established_tenure_days`."
    )
    return schema


def _text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """Path under ``schemas/`` → schema text, exactly as ``timeline schemas export`` writes it."""
    files: dict[str, str] = {}
    for event_type in EVENT_MODELS:
        files[schema_filename(event_type)] = _text(_input_schema(event_type))
    for event_type in EVENT_MODELS:
        files[published_path(event_type)] = _text(published_schema(event_type))
    files[POLICY_SCHEMA] = _text(policy_schema())
    return files


def export_schemas(directory: Path) -> list[Path]:
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
