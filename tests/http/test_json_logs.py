"""``--log-json`` / ``TIMELINE_LOG_JSON``: every log line one JSON object, with one line per request of the service."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import httpx

import timeline
from tests.factories import registered
from tests.http.test_serve import TIMELINE, _free_port, _wait_alive
from timeline.cli.logjson import JsonFormatter


def test_a_record_is_one_line_of_json_with_time_level_logger_message_and_the_access_fields():
    record = logging.LogRecord("timeline.http.access", logging.INFO, __file__, 1, "GET %s", ("/healthz",), None)
    record.request_id, record.route, record.status, record.duration_ms = "r1", "/healthz", 200, 1.5
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("+00:00") and entry["level"] == "INFO" and entry["logger"] == "timeline.http.access"
    assert (entry["message"], entry["request_id"], entry["route"], entry["status"]) == (
        "GET /healthz",
        "r1",
        "/healthz",
        200,
    )


def test_an_error_keeps_its_traceback_inside_the_one_line():
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: broken" in json.loads(line)["exception"]


def _serve(url: str, port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [str(TIMELINE), "serve", "--db", url, "--port", str(port), *args]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)


def _lines_after_requests(process: subprocess.Popen, base: str) -> list[dict]:
    try:
        _wait_alive(base, process)
        httpx.get(f"{base}/v1/customers/C1/state", headers={"X-Request-Id": "req-17"})
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    return [json.loads(line) for line in stderr.splitlines()]


def test_serve_with_log_json_logs_every_line_as_json_and_one_per_request(sqlite_url):
    with timeline.open(sqlite_url) as tl:
        tl.ingest([registered("C1")])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    lines = _lines_after_requests(_serve(sqlite_url, port, "--log-json"), base)
    assert lines[0]["message"] == f"serving {sqlite_url} on {base}"
    [unauthorized] = [e for e in lines if e.get("request_id") == "req-17"]
    assert unauthorized["route"] == "/v1/customers/{customer_id}/state" and unauthorized["status"] == 401
    assert unauthorized["method"] == "GET" and unauthorized["duration_ms"] > 0
    assert any(e.get("route") == "/healthz" and e["status"] == 200 for e in lines)


def test_the_variable_asks_for_it_too_and_without_either_no_line_per_request(sqlite_url):
    with timeline.open(sqlite_url) as tl:
        tl.ingest([registered("C1")])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    lines = _lines_after_requests(_serve(sqlite_url, port, env={**os.environ, "TIMELINE_LOG_JSON": "1"}), base)
    assert any(e.get("request_id") == "req-17" for e in lines)
    plain = _serve(sqlite_url, port := _free_port())
    try:
        _wait_alive(f"http://127.0.0.1:{port}", plain)
    finally:
        plain.send_signal(signal.SIGINT)
        _, stderr = plain.communicate(timeout=20)
    assert stderr.splitlines() == [f"serving {sqlite_url} on http://127.0.0.1:{port}"]
