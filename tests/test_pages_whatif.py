"""The what-if form of the branch page (issue 13): a pasted candidate's summary tables and the customers who differ.

For a branch head (their own branch) and compliance, POSTed with the form's
CSRF token; a refused candidate shows its one line.
"""

from __future__ import annotations

import json

from tests.test_pages import _csrf, site  # noqa: F401 - the signed-in site of the page tests
from timeline.domain.policy import load_policy


def candidate(threshold: str = "1000") -> str:
    policy = load_policy().model_dump(mode="json")
    policy["id"] = "page-candidate"
    policy["tier"]["tiers"][1]["threshold"] = threshold
    return json.dumps(policy)


def ask(client, branch: str, **fields: str):
    form = client.get(f"/branches/{branch}/whatif")
    assert form.status_code == 200, form.text
    return client.post(f"/branches/{branch}/whatif", data={"csrf": _csrf(form.text), **fields})


def test_a_branch_head_compares_a_candidate_for_their_branch_and_the_differing_customers_link_to_their_pages(site):  # noqa: F811
    client = site.signed_in("branch_head")
    assert '<a href="/branches/BR001/whatif">' in client.get("/branches/BR001").text
    answer = ask(client, "BR001", policy=candidate(), **{"from": "", "as_of": ""})

    assert answer.status_code == 200, answer.text
    for heading in ("Tier moves", "At risk", "Points outstanding", "Tiers", "Customers who differ"):
        assert f">{heading}</h2>" in answer.text
    assert "customers differ under page-candidate" in answer.text
    assert 'href="/customers/C' in answer.text


def test_a_branch_head_cannot_ask_about_another_branch(site):  # noqa: F811
    client = site.signed_in("branch_head")
    assert client.get("/branches/BR002/whatif").status_code == 404


def test_compliance_asks_about_any_branch_from_a_date(site):  # noqa: F811
    client = site.signed_in("compliance")
    answer = ask(client, "BR002", policy=candidate(), **{"from": "2025-06-01", "as_of": ""})
    assert answer.status_code == 200, answer.text
    assert ">Tier moves</h2>" in answer.text


def test_a_refused_candidate_shows_its_one_line(site):  # noqa: F811
    client = site.signed_in("compliance")
    answer = ask(client, "BR001", policy=candidate(threshold="900000"), **{"from": "", "as_of": ""})
    assert answer.status_code == 422
    assert 'role="alert">tier.tiers[2].threshold:' in answer.text


def test_the_form_needs_its_csrf_token(site):  # noqa: F811
    client = site.signed_in("compliance")
    answer = client.post("/branches/BR001/whatif", data={"csrf": "forged", "policy": candidate()})
    assert answer.status_code == 403


def test_an_rm_has_no_what_if(site):  # noqa: F811
    client = site.signed_in("rm")
    assert client.get("/branches/BR001/whatif").status_code in (403, 404)
