"""Status, liveness, readiness, and the same answers as the CLI's ``--json``, field for field."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.http.conftest import serve
from timeline.http.app import create_app

TIMELINE = Path(sys.executable).with_name("timeline")
UNROUTABLE = "10.255.255.1:9092"
"""A broker address no packet reaches: connecting waits until it times out."""


def test_status_answers_within_5_seconds_with_the_broker_unreachable_saying_so(served):
    service = serve(served.url, kafka=UNROUTABLE)
    try:
        with TestClient(create_app(service)) as client:
            started = time.monotonic()
            response = client.get("/v1/status", headers={"Authorization": f"Bearer {served.tokens['ops']}"})
            took = time.monotonic() - started
    finally:
        service.close()
    assert response.status_code == 200 and took < 5, took
    report = response.json()
    assert report["store"]["head"] == 3
    assert UNROUTABLE in report["errors"]["kafka"] and report["kafka_error"] == report["errors"]["kafka"]


def test_healthz_and_readyz_need_no_token(served):
    assert served.get("/healthz").json()["alive"] is True
    assert served.get("/readyz").json() == {"ready": True, "head_position": 3}


def test_readyz_is_503_when_the_store_is_gone(served):
    served.service.engine.store.close()
    response = served.get("/readyz")
    assert response.status_code == 503 and response.json()["detail"].startswith("not ready: ")


def _cli(url: str, *args: str) -> list[dict]:
    run = subprocess.run(
        [str(TIMELINE), *args, "--db", url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_state_explain_and_history_are_the_clis_json_field_for_field(served):
    when = {"as_of": "2025-03-31", "known_at": "2099-01-01T00:00:00+08:00"}
    cli_when = ["--as-of", when["as_of"], "--known-at", when["known_at"]]
    [state] = _cli(served.url, "state", "C1", *cli_when)
    assert served.get("/v1/customers/C1/state", "compliance", params=when).json() == state
    [explanation] = _cli(served.url, "explain", "C1", *cli_when)
    assert served.get("/v1/customers/C1/explain", "compliance", params=when).json() == explanation
    assert served.get("/v1/customers/C1/history", "compliance").json() == _cli(served.url, "history", "C1")
    verified = served.get("/v1/verify", "ops").json()
    assert verified == _cli(served.url, "verify")[0]


def test_the_customer_list_is_paged_and_filtered(served):
    first = served.get("/v1/customers?limit=1", "compliance").json()
    assert [c["customer_id"] for c in first["customers"]] == ["C1"] and first["next_after"] == "C1"
    rest = served.get("/v1/customers?limit=1&after=C1", "compliance").json()
    assert [c["customer_id"] for c in rest["customers"]] == ["C2"] and rest["next_after"] is None
    in_br002 = served.get("/v1/customers?branch=BR002", "compliance").json()["customers"]
    assert [c["customer_id"] for c in in_br002] == ["C2"]
    assert served.get("/v1/customers?as_of=2024-12-31", "compliance").json()["customers"] == [], "none registered yet"
