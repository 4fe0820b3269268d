"""``POST /v1/whatif``: compliance and a branch head (their branch only) are answered, every other role is 403.

The served store holds C1 (BR001, 1,000 CNY) and C2 (BR002, none): a candidate whose affluent threshold is
500 moves C1 alone.
"""

from __future__ import annotations

import pytest

from tests.http.conftest import CALLERS
from tests.test_policy_schema import changed

LOW = changed("id", "affluent-at-500", changed("tier.tiers.1.threshold", "500"))
AS_OF = "2099-01-01"


def ask(served, role, **body):
    return served.post("/v1/whatif", role, json={"policy": LOW, "as_of": AS_OF, **body})


@pytest.mark.parametrize("role", list(CALLERS))
def test_compliance_and_branch_heads_are_answered_and_other_roles_refused(served, role):
    response = ask(served, role)
    if role in ("compliance", "branch_head"):
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == f"role {role} is not granted whatif"


def test_no_token_is_401(served):
    response = served.post("/v1/whatif", None, json={"policy": LOW})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_compliance_sees_every_customer_and_the_summary_as_the_cli_prints_it(served):
    answer = ask(served, "compliance").json()
    assert (answer["current_policy"], answer["candidate_policy"], answer["branch"]) == (
        "bank-default-v1",
        "affluent-at-500",
        None,
    )
    [moved] = answer["customers"]
    assert moved["customer_id"] == "C1" and moved["branch_id"] == "BR001"
    assert (moved["current"]["tier"], moved["candidate"]["tier"]) == ("mass", "affluent")
    summary = answer["summary"]
    assert (summary["customers"], summary["differing"]) == (2, 1)
    assert summary["tier_moves"] == [{"from": "mass", "to": "affluent", "customers": 1}]


def test_a_branch_head_is_answered_for_their_branch_alone(served):
    answer = ask(served, "branch_head").json()
    assert answer["branch"] == "BR001" and answer["summary"]["customers"] == 1
    again = ask(served, "branch_head", branch="BR001").json()
    assert (again["customers"], again["summary"]) == (answer["customers"], answer["summary"])


def test_a_branch_head_naming_another_branch_is_refused(served):
    response = ask(served, "branch_head", branch="BR002")
    assert response.status_code == 403
    assert response.json()["detail"] == "a branch_head may ask what-if only about their branch BR001, not BR002"


def test_a_past_known_at_is_for_compliance_alone(served):
    assert ask(served, "compliance", known_at="2020-01-01").status_code == 200
    refused = ask(served, "branch_head", known_at="2020-01-01")
    assert refused.status_code == 403 and "past known_at is for compliance" in refused.json()["detail"]


def test_an_inconsistent_candidate_is_422_with_the_one_line(served):
    bad = changed("tier.tiers.2.threshold", "70000", changed("tier.tiers.1.threshold", "80000"))
    response = served.post("/v1/whatif", "compliance", json={"policy": bad})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "tier.tiers[2].threshold: 70000 is not above tier.tiers[1].threshold 80000"


def test_a_candidate_with_an_unknown_field_is_422_naming_it(served):
    response = served.post("/v1/whatif", "compliance", json={"policy": changed("points.bonus", 5)})
    assert response.status_code == 422 and response.json()["detail"] == "points.bonus: unknown field (value 5)"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"policy": LOW, "as_of": "soon"}, "as_of: "),
        ({"policy": LOW, "from": "2025-13-01"}, "from: '2025-13-01' is not a date"),
        ({"policy": LOW, "colour": "blue"}, "body at colour: Extra inputs are not permitted"),
        ({}, "body at policy: Field required"),
    ],
)
def test_a_malformed_request_is_400_and_says_where(served, body, detail):
    response = served.post("/v1/whatif", "compliance", json=body)
    assert response.status_code == 400 and response.json()["detail"].startswith(detail), response.text
