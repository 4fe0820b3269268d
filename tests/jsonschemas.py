"""A standard JSON Schema 2020-12 validator over the checked-in files of ``schemas/``, references resolved.

Every file is registered under its file URI and under its ``$id`` (a published-data schema's ``$id`` is
the ``dataschema`` of its messages), so ``$ref`` between the AsyncAPI document and the schema files
resolves as a consumer's own tooling would resolve it, with format checking on.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from timeline.consumers.cloudevents import ASYNCAPI_FILE, message_name, schema_file

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def load(relative: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / relative).read_text(encoding="utf-8"))


def file_uri(relative: str) -> str:
    return (SCHEMAS / relative).as_uri()


@functools.cache
def registry() -> Registry:
    resources = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(contents, default_specification=DRAFT202012)
        uri = path.as_uri()
        resources.append((uri, resource))
        if isinstance(contents.get("$id"), str):
            resources.append((urljoin(uri, contents["$id"]), resource))
    return Registry().with_resources(resources)


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def data_validator(relative: str) -> Draft202012Validator:
    """The validator of a schema file, by its path under ``schemas/``."""
    return validator(load(relative))


@functools.cache
def message_validator(event_type: str) -> Draft202012Validator:
    """The validator of the AsyncAPI message of ``event_type``: its payload, every ``$ref`` resolved."""
    pointer = f"#/components/messages/{message_name(event_type)}/payload"
    return validator({"$ref": file_uri(ASYNCAPI_FILE) + pointer})


def data_errors(ce: dict[str, Any]) -> list[str]:
    """Why a message's ``data`` does not fit the file its ``dataschema`` names (empty: it fits)."""
    relative = schema_file(ce)
    if load(relative).get("$id") != ce["dataschema"]:
        return [f"{relative} has $id {load(relative).get('$id')!r}, not the dataschema {ce['dataschema']!r}"]
    return [f"{relative}: {e.json_path}: {e.message}" for e in data_validator(relative).iter_errors(ce["data"])]


def message_errors(ce: dict[str, Any]) -> list[str]:
    """Why a whole message does not fit the AsyncAPI message of its type (empty: it fits)."""
    return [f"{ce['type']}: {e.json_path}: {e.message}" for e in message_validator(ce["type"]).iter_errors(ce)]
