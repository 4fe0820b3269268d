"""Every look at a named customer's state, explanation or history is on the record before it is shown."""

from __future__ import annotations


def _log(served) -> list[dict]:
    return served.get("/v1/access-log", "compliance").json()["records"]


def test_a_state_shown_is_recorded_with_principal_role_customer_and_purpose(served):
    served.get("/v1/customers/C1/state", "rm", headers={"X-Purpose": "annual review"})
    [record] = _log(served)
    assert {k: record[k] for k in ("principal", "role", "customer_id", "what", "purpose")} == {
        "principal": "rita",
        "role": "rm",
        "customer_id": "C1",
        "what": "state",
        "purpose": "annual review",
    }


def test_explanations_and_histories_are_recorded_too(served):
    served.get("/v1/customers/C1/explain", "branch_head")
    served.get("/v1/customers/C2/history", "compliance")
    assert [(r["principal"], r["what"], r["customer_id"]) for r in _log(served)] == [
        ("bert", "explain", "C1"),
        ("carol", "history_pii", "C2"),
    ]


def test_nothing_is_recorded_for_what_is_not_shown(served):
    served.get("/v1/customers/C2/state", "rm")  # out of scope: 404
    served.get("/v1/customers/C1/history", "branch_head")  # forbidden: 403
    served.get("/v1/customers/C1/state?as_of=2020-01-01", "rm")  # not registered then: 404
    served.get("/v1/customers", "rm")  # a list names no one customer
    assert _log(served) == []


def test_a_purpose_that_is_not_one_line_of_text_is_refused_and_nothing_shown(served):
    response = served.get("/v1/customers/C1/state", "rm", headers={"X-Purpose": "x" * 201})
    assert response.status_code == 400 and response.json()["detail"] == "purpose is 201 characters long: at most 200"
    assert _log(served) == []


def test_the_access_log_answers_who_looked_at_this_customer_and_why(served):
    served.get("/v1/customers/C1/state", "rm", headers={"X-Purpose": "complaint 17"})
    served.get("/v1/customers/C2/state", "compliance")
    served.get("/v1/customers/C1/explain", "compliance", headers={"X-Purpose": "audit"})
    about_c1 = served.get("/v1/access-log?customer=C1", "compliance").json()["records"]
    assert [(r["principal"], r["purpose"]) for r in about_c1] == [("rita", "complaint 17"), ("carol", "audit")]
    by_carol = served.get("/v1/access-log?principal=carol", "compliance").json()["records"]
    assert [r["customer_id"] for r in by_carol] == ["C2", "C1"]
    assert served.get("/v1/access-log?since=2099-01-01", "compliance").json()["records"] == []


def test_the_access_log_is_paged(served):
    for _ in range(3):
        served.get("/v1/customers/C1/state", "rm")
    first = served.get("/v1/access-log?limit=2", "compliance").json()
    assert [r["seq"] for r in first["records"]] == [1, 2] and first["next_after"] == 2
    rest = served.get(f"/v1/access-log?limit=2&after={first['next_after']}", "compliance").json()
    assert [r["seq"] for r in rest["records"]] == [3] and rest["next_after"] is None


def test_verify_covers_the_access_log(served):
    served.get("/v1/customers/C1/state", "rm")
    report = served.get("/v1/verify", "ops").json()
    assert report["intact"] is True and report["access_findings"] == []


def test_concurrent_looks_each_get_their_own_place_in_an_intact_chain(served):
    from concurrent.futures import ThreadPoolExecutor

    def look(_: int) -> int:
        return served.get("/v1/customers/C1/state", "rm").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(look, range(30))) == {200}
    records = _log(served)
    assert [r["seq"] for r in records] == list(range(1, 31))
    assert served.get("/v1/verify", "ops").json()["intact"] is True
