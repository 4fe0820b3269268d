"""Who may call what: every role against every endpoint, and scope (404 hides whether a customer exists)."""

from __future__ import annotations

import pytest

from tests.http.conftest import CALLERS

ROLES = list(CALLERS)

MATRIX = {
    ("GET", "/v1/customers/C1/state"): {"compliance", "branch_head", "rm"},
    ("GET", "/v1/customers/C1/explain"): {"compliance", "branch_head", "rm"},
    ("GET", "/v1/customers/C1/history"): {"compliance", "rm"},
    ("GET", "/v1/customers"): {"compliance", "branch_head", "rm"},
    ("GET", "/v1/followups"): {"rm"},
    ("GET", "/v1/verify"): {"compliance", "ops"},
    ("GET", "/v1/status"): {"ops"},
    ("GET", "/v1/access-log"): {"compliance"},
    ("POST", "/v1/events"): {"source"},
    ("POST", "/v1/customers/NOBODY/erasure"): {"compliance"},
}
"""Endpoint → the roles answered; the others get 403. (An erasure of no customer is answered, and refused: 422.)"""


MATRIX_NAMED = ("state", "explain", "history")


def _call(served, method: str, path: str, role: str | None):
    if path.endswith("/erasure"):
        return served.post(path, role, json={"reason": "customer request"})
    if method == "POST":
        return served.post(path, role, content=b"", headers={"Content-Type": "application/x-ndjson"})
    return served.get(path, role)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_answered_where_granted_and_refused_403_elsewhere(served, role):
    for (method, path), allowed in MATRIX.items():
        response = _call(served, method, path, role)
        expected = (422 if path.endswith("/erasure") else 200) if role in allowed else 403
        assert response.status_code == expected, (role, method, path, response.text)
        if expected == 403:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"].startswith(f"role {role} is not granted")


def test_no_token_is_401_on_every_v1_endpoint(served):
    for method, path in MATRIX:
        response = _call(served, method, path, None)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "no bearer token: send Authorization: Bearer TOKEN"


@pytest.mark.parametrize(
    ("role", "what"), [("branch_head", "state"), ("branch_head", "explain"), *(("rm", w) for w in MATRIX_NAMED)]
)
def test_a_customer_out_of_scope_is_404_like_one_that_does_not_exist(served, role, what):
    other = served.get(f"/v1/customers/C2/{what}", role)
    missing = served.get(f"/v1/customers/NOBODY/{what}", role)
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"] == missing.json()["detail"] == "no such customer"


def test_compliance_sees_every_customer_and_is_told_when_one_does_not_exist(served):
    assert served.get("/v1/customers/C2/state", "compliance").status_code == 200
    missing = served.get("/v1/customers/NOBODY/state", "compliance")
    assert missing.status_code == 404 and missing.json()["detail"] == "unknown customer NOBODY: no events stored"


def test_the_customer_list_holds_only_the_customers_in_sight(served):
    seen = {
        role: [c["customer_id"] for c in served.get("/v1/customers", role).json()["customers"]] for role in ROLES[:3]
    }
    assert seen == {"compliance": ["C1", "C2"], "branch_head": ["C1"], "rm": ["C1"]}


def test_a_past_known_at_is_for_compliance_alone(served):
    later = "/v1/customers/C1/state?known_at=2099-01-01"
    past = "/v1/customers/C1/state?known_at=2025-06-01T00:00:00Z"
    assert served.get(later, "rm").status_code == 200, "a known_at after now is as known now"
    for role in ("branch_head", "rm"):
        response = served.get(past, role)
        assert response.status_code == 403 and "past known_at is for compliance" in response.json()["detail"]
    answered = served.get(past, "compliance")  # the events were recorded after 2025-06-01: not known then
    assert answered.status_code == 404 and answered.json()["detail"].endswith("as known at 2025-06-01T00:00:00Z")


def test_any_as_of_is_open_to_the_scoped_roles(served):
    for role in ("branch_head", "rm"):
        assert served.get("/v1/customers/C1/state?as_of=2025-03-31", role).status_code == 200


def test_a_customer_in_scope_but_not_registered_as_of_as_of_is_404_saying_so(served):
    response = served.get("/v1/customers/C1/state?as_of=2024-12-31", "rm")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("customer C1 is not registered as of 2024-12-31T15:59:59.999999Z")


def test_a_grant_and_a_revocation_take_effect_without_a_restart(served):
    from timeline.application.access import Grants

    grants = Grants(served.service.access)
    token = grants.grant("newcomer", "ops")
    headers = {"Authorization": f"Bearer {token}"}
    assert served.client.get("/v1/verify", headers=headers).status_code == 200
    grants.revoke("newcomer")
    refused = served.client.get("/v1/verify", headers=headers)
    assert refused.status_code == 401 and refused.json()["detail"] == "unknown or revoked token"


def test_metrics_need_no_token_unless_asked_for_the_ops_role(served, sqlite_url):
    from fastapi.testclient import TestClient

    from tests.http.conftest import serve
    from timeline.http.app import create_app

    assert served.get("/metrics").status_code == 200
    guarded = serve(sqlite_url, metrics_need_ops=True)
    try:
        with TestClient(create_app(guarded)) as client:
            assert client.get("/metrics").status_code == 401
            for role in ROLES:
                response = client.get("/metrics", headers={"Authorization": f"Bearer {served.tokens[role]}"})
                assert response.status_code == (200 if role == "ops" else 403), role
    finally:
        guarded.close()
