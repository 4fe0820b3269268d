"""Bad input: each mistake a problem document with a precise ``detail``, and nothing changed."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from tests.http.conftest import serve
from timeline.http.app import create_app

IDP_KEY = ec.generate_private_key(ec.SECP256R1())
FORGER_KEY = ec.generate_private_key(ec.SECP256R1())


def _problem(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    return body["detail"]


def test_an_unknown_query_parameter_is_refused_naming_it_and_what_is_taken(served):
    detail = _problem(served.get("/v1/customers/C1/state?asof=2025-01-01", "rm"), 400)
    assert detail == "unknown query parameter asof (this endpoint takes: as_of, known_at)"
    assert served.get("/v1/access-log", "compliance").json()["records"] == [], "nothing was shown, nothing recorded"


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("yesterday", "as_of: not a date or an ISO 8601 instant: 'yesterday'"),
        (
            "2025-06-30T12:00:00",
            "as_of: instant '2025-06-30T12:00:00' needs an offset, e.g. 2025-06-30T12:00:00+08:00 or "
            "2025-06-30T12:00:00Z",
        ),
        ("2025-02-30", "as_of: not a date or an ISO 8601 instant: '2025-02-30'"),
    ],
)
def test_a_malformed_instant_is_400_saying_which_parameter_and_why(served, value, detail):
    assert _problem(served.get("/v1/customers/C1/state", "rm", params={"as_of": value}), 400) == detail


def test_a_malformed_number_is_400_naming_the_parameter(served):
    detail = _problem(served.get("/v1/customers?limit=many", "rm"), 400)
    assert detail == "query parameter limit: Input should be a valid integer, unable to parse string as an integer"


def test_an_unknown_endpoint_and_a_wrong_method_are_problems_too(served):
    assert _problem(served.get("/v1/nothing", "rm"), 404) == "no such endpoint: GET /v1/nothing"
    assert _problem(served.client.delete("/v1/events"), 405) == "DELETE is not allowed on /v1/events"


def test_a_malformed_authorization_header_is_401(served):
    response = served.get("/v1/verify", headers={"Authorization": f"Basic {served.tokens['ops']}"})
    assert _problem(response, 401) == "the Authorization header must be: Bearer TOKEN"


@pytest.fixture
def with_idp(tmp_path, served):
    """The served store, also accepting JWTs of the identity provider."""
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(
        IDP_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    service = serve(served.url, jwt_key=key_file, jwt_audience="timeline")
    with TestClient(create_app(service)) as client:
        yield client
    service.close()


def _jwt(key=IDP_KEY, minutes: int = 5, **claims) -> str:
    body = {"sub": "li.ming", "role": "rm", "rm": "RM001", "aud": "timeline"}
    body["exp"] = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    return jwt.encode({**body, **claims}, key, algorithm="ES256")


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_jwt_of_the_identity_provider_names_the_principal_in_the_access_log(with_idp, served):
    assert with_idp.get("/v1/customers/C1/state", headers=_as(_jwt())).status_code == 200
    assert with_idp.get("/v1/customers/C2/state", headers=_as(_jwt())).status_code == 404, "scope from the rm claim"
    [record] = served.get("/v1/access-log", "compliance").json()["records"]
    assert (record["principal"], record["role"]) == ("li.ming", "rm")


def test_an_expired_jwt_is_401_saying_so(with_idp):
    response = with_idp.get("/v1/customers/C1/state", headers=_as(_jwt(minutes=-5)))
    assert _problem(response, 401) == "token has expired"


def test_a_forged_jwt_is_401_saying_its_signature_does_not_verify(with_idp):
    response = with_idp.get("/v1/customers/C1/state", headers=_as(_jwt(key=FORGER_KEY)))
    assert _problem(response, 401) == "token signature does not verify with the identity provider's key"


def test_a_jwt_for_another_audience_is_401(with_idp):
    response = with_idp.get("/v1/customers/C1/state", headers=_as(_jwt(aud="payments")))
    assert _problem(response, 401) == "token audience is not timeline"


def test_without_an_identity_provider_a_jwt_is_401(served):
    response = served.get("/v1/customers/C1/state", headers=_as(_jwt()))
    assert _problem(response, 401) == "not a timeline token (tl_…) and no identity provider is configured"
