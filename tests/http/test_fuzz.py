"""The API fuzzed from its own OpenAPI document: whatever is sent, never a server error (5xx)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from timeline.http.app import create_app


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: object, value: object) -> bytes:
    """A generated JSON Lines body (a string in the document) as sent: its UTF-8 bytes."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(str(value), "utf-8")


APP = create_app()
"""Served by each test's own store (``app.state.service``, set in the test)."""
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)

# the role each operation is called as, so the fuzzing gets past authentication into the endpoint
ROLE_OF = {"POST /v1/events": "source", "GET /v1/status": "ops", "GET /v1/followups": "rm"}


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_service_fail(case, served):
    APP.state.service = served.service
    role = ROLE_OF.get(f"{case.method.upper()} {case.path}", "compliance")
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {served.tokens[role]}"}
    case.call_and_validate(checks=[not_a_server_error])
