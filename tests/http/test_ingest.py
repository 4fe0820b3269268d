"""``POST /v1/events``: the same ingestion as ``timeline ingest``, outcome by outcome."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.factories import deposit, registered
from tests.http.conftest import serve
from timeline.http.app import create_app

NDJSON = {"Content-Type": "application/x-ndjson"}


def _lines(*events) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def _head(served) -> int:
    return served.service.engine.store.head_position()


def test_json_lines_are_ingested_each_with_its_outcome_and_a_summary(served):
    good = registered("C3", branch_id="BR001", relationship_manager="RM001")
    body = _lines(good, registered("C1")) + b"{not json\n"
    response = served.post("/v1/events", "source", content=body, headers=NDJSON)
    assert response.status_code == 200
    result = response.json()
    assert [(o["line"], o["status"]) for o in result["outcomes"]] == [(1, "accepted"), (2, "rejected"), (3, "rejected")]
    assert result["outcomes"][0]["event_id"] == good["event_id"] and result["outcomes"][0]["error"] is None
    assert result["outcomes"][1]["error"] == "customer C1 is already registered"
    assert result["summary"] == {"accepted": 1, "duplicate": 0, "rejected": 2}
    assert served.get("/v1/customers/C3/state", "rm").status_code == 200, "the valid line was stored"


def test_a_json_array_is_ingested_as_lines_in_its_order(served):
    events = [registered("C4"), deposit("C4", amount="50.00")]
    response = served.post("/v1/events", "source", json=events)
    assert response.status_code == 200
    assert [(o["line"], o["status"]) for o in response.json()["outcomes"]] == [(1, "accepted"), (2, "accepted")]
    again = served.post("/v1/events", "source", json=events).json()
    assert again["summary"] == {"accepted": 0, "duplicate": 2, "rejected": 0}


def test_atomic_stores_all_or_none_and_answers_422_when_any_is_rejected(served):
    before = _head(served)
    body = _lines(registered("C5"), registered("C1"))
    response = served.post("/v1/events?atomic=true", "source", content=body, headers=NDJSON)
    assert response.status_code == 422
    problem = response.json()
    assert problem["detail"] == "none was stored: atomic input had rejections (line 2)"
    assert problem["summary"]["accepted"] == 0 and len(problem["outcomes"]) == 2
    assert _head(served) == before
    fine = served.post("/v1/events?atomic=true", "source", content=_lines(registered("C5")), headers=NDJSON)
    assert fine.status_code == 200 and fine.json()["summary"]["accepted"] == 1


def test_any_other_content_type_is_415(served):
    for kind in ("text/plain", "application/xml", None):
        headers = {"Content-Type": kind} if kind else {}
        response = served.post("/v1/events", "source", content=_lines(registered("C6")), headers=headers)
        assert response.status_code == 415, kind
        assert (
            "is not accepted: send application/x-ndjson (JSON Lines) or application/json" in response.json()["detail"]
        )
    assert served.get("/v1/customers/C6/state", "compliance").status_code == 404


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(sqlite_url, served):
    small = serve(sqlite_url, max_body=100)
    try:
        with TestClient(create_app(small)) as client:
            headers = {**NDJSON, "Authorization": f"Bearer {served.tokens['source']}"}
            body = _lines(registered("C7"))
            assert len(body) > 100
            response = client.post("/v1/events", content=body, headers=headers)
            assert response.status_code == 413
            assert response.json()["detail"] == f"body of {len(body)} bytes is over the limit of 100 bytes"
    finally:
        small.close()
    assert served.get("/v1/customers/C7/state", "compliance").status_code == 404


def test_a_json_body_that_is_not_an_array_is_400(served):
    response = served.post("/v1/events", "source", json={"type": "customer.registered"})
    assert response.status_code == 400
    assert response.json()["detail"] == "a application/json body must be an array of events, not a JSON dict"
    broken = served.post("/v1/events", "source", content=b"[{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["detail"].startswith("body is not JSON")


def test_ingestion_is_counted_by_outcome_and_reason(served):
    c8 = registered("C8")
    body = _lines(c8, registered("C1"), deposit("NOBODY")) + b"[\n"
    served.post("/v1/events", "source", content=body, headers=NDJSON)
    served.post("/v1/events", "source", content=_lines(c8), headers=NDJSON)  # the same event again
    text = served.get("/metrics").text
    for sample in (
        'timeline_events_ingested_total{outcome="accepted",reason=""} 1.0',
        'timeline_events_ingested_total{outcome="duplicate",reason=""} 1.0',
        'timeline_events_ingested_total{outcome="rejected",reason="already_registered"} 1.0',
        'timeline_events_ingested_total{outcome="rejected",reason="not_registered"} 1.0',
        'timeline_events_ingested_total{outcome="rejected",reason="malformed"} 1.0',
        "timeline_store_head_position 4.0",
        'timeline_http_request_duration_seconds_count{method="POST",route="/v1/events",status="200"} 2.0',
        "timeline_ingest_duration_seconds_count 2.0",
    ):
        assert sample in text, sample
    assert "C8" not in text and "NOBODY" not in text, "no customer data in the metrics"


def test_compliance_erases_a_customer_by_request_the_erasure_an_event_with_its_actor(served):
    response = served.post("/v1/customers/C2/erasure", "compliance", json={"reason": "customer request"})
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    history = served.get("/v1/customers/C2/history", "compliance").json()
    assert (history[-1]["type"], history[-1]["actor"]) == ("customer.erased", "carol")
    assert served.get("/v1/customers/C2/state", "compliance").json()["erased"] is True


def test_an_erasure_the_rules_refuse_is_422_saying_why(served):
    response = served.post("/v1/customers/C1/erasure", "compliance", json={"reason": "customer request"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("erasure refused: customer cannot be erased while accounts hold money")
