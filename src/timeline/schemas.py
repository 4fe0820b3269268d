"""JSON Schemas (draft 2020-12) derived from the event models, one file per type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from timeline.events import EVENT_MODELS, SCHEMA_VERSION

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(event_type: str, version: int = SCHEMA_VERSION) -> str:
    return f"{event_type}.v{version}.json"


def render_schemas() -> dict[str, str]:
    """File name → schema text, exactly as ``timeline schemas export`` writes it."""
    files: dict[str, str] = {}
    for event_type, model in EVENT_MODELS.items():
        schema: dict[str, Any] = {
            "$schema": DRAFT,
            "$id": schema_filename(event_type),
            **model.model_json_schema(mode="validation"),
        }
        schema["title"] = event_type
        files[schema_filename(event_type)] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return files


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
