"""The OpenAPI document other tools rely on is checked in, and is the service's own."""

from __future__ import annotations

import json
from pathlib import Path

from timeline.http.openapi import document

CHECKED_IN = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def test_schemas_openapi_json_is_the_services_document():
    assert CHECKED_IN.read_text(encoding="utf-8") == document(), (
        "schemas/openapi.json is stale: python -m timeline.http.openapi > schemas/openapi.json"
    )


def test_the_contract_lists_every_endpoint_of_the_service():
    paths = json.loads(document())["paths"]
    assert set(paths) == {
        "/v1/customers/{customer_id}/state",
        "/v1/customers/{customer_id}/explain",
        "/v1/customers/{customer_id}/history",
        "/v1/customers/{customer_id}/erasure",
        "/v1/customers",
        "/v1/events",
        "/v1/followups",
        "/v1/verify",
        "/v1/status",
        "/v1/access-log",
        "/v1/whatif",
        "/healthz",
        "/readyz",
        "/metrics",
    }


def test_errors_are_documented_as_problem_details():
    spec = json.loads(document())
    state = spec["paths"]["/v1/customers/{customer_id}/state"]["get"]["responses"]
    assert set(state) >= {"200", "400", "401", "403", "404"}
    assert "application/problem+json" in state["404"]["content"]
    assert spec["components"]["schemas"]["Problem"]["required"] == ["title", "status", "detail"]
