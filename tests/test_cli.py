"""The CLI as a user meets it: real processes, exit codes, one line per mistake."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.factories import correction, deposit, registered, visit
from timeline.crypto import new_kek_text

TIMELINE = str(Path(sys.executable).with_name("timeline"))


@pytest.fixture
def run(tmp_path, db_url):
    env = {**os.environ, "TIMELINE_DB": db_url, "TIMELINE_KEK": new_kek_text()}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TIMELINE, *args], input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )

    return run


def jsonl(*events) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)


def test_ingest_reports_rejects_as_json_lines_then_a_summary_and_exits_1(run, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(registered(), deposit(), deposit(amount="12.345")) + "{oops\n", encoding="utf-8")
    result = run("ingest", str(path))
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r.get("line") for r in lines[:-1]] == [3, 4]
    assert "more than 2 decimal places" in lines[0]["error"]
    assert lines[0]["event_id"]
    assert "malformed JSON" in lines[1]["error"]
    assert lines[-1] == {"summary": {"accepted": 2, "duplicate": 0, "rejected": 2}}


def test_ingest_from_stdin_exits_0_when_nothing_was_rejected(run):
    result = run("ingest", "-", stdin=jsonl(registered(), visit()))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.splitlines()[-1]) == {"summary": {"accepted": 2, "duplicate": 0, "rejected": 0}}


def test_a_file_that_is_not_utf8_is_refused_whole_in_one_line(run, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(jsonl(registered()).encode() + "é\n".encode("latin-1"))
    result = run("ingest", str(path))
    assert result.returncode == 2
    offset = len(jsonl(registered()).encode())
    expected = f"timeline: error: {path} is not UTF-8 (invalid byte at offset {offset})"
    assert result.stderr.strip().splitlines() == [expected]
    assert run("verify").stderr.startswith("timeline: error: no timeline store at"), "nothing stored, nothing created"


def test_an_unreachable_database_is_one_clear_line(run):
    result = run("verify", "--db", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("timeline: error: cannot reach PostgreSQL at 127.0.0.1:1/nowhere")
    assert "start one with" in line


def test_an_unsupported_database_url_is_one_clear_line(run):
    result = run("verify", "--db", "mysql://x")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "timeline: error: unsupported database URL 'mysql://x': use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )


def test_history_json_lists_events_in_business_order_with_recorded_at_and_position(run):
    late = visit(at="2025-01-01T10:00:00+08:00")
    run("ingest", "-", stdin=jsonl(registered(), deposit(), late))
    result = run("history", "C1", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["customer.registered", "visit.recorded", "deposit.made"]
    assert rows[1]["position"] > rows[2]["position"], "the late visit was stored after the deposit"
    assert rows[0]["data"]["name"] == "王小明"
    assert all("recorded_at" in r for r in rows)


def test_history_for_people_shows_whole_local_instants_and_event_ids_at_80_columns(run):
    run("ingest", "-", stdin=jsonl(registered(), deposit()))
    rows = run("history", "C1", "--json").stdout.splitlines()
    result = run("history", "C1")  # not a terminal: rich renders 80 columns wide
    assert result.returncode == 0, result.stderr
    shanghai = ZoneInfo("Asia/Shanghai")
    for row in map(json.loads, rows):
        for field in ("occurred_at", "recorded_at"):
            moment = dt.datetime.fromisoformat(row[field]).astimezone(shanghai)
            assert moment.isoformat() in result.stdout, "in the policy's time zone, with its offset"
        assert f"{row['type']} · position {row['position']}" in result.stdout
        assert f"id {row['event_id']}" in result.stdout, "a correction needs the id"
    assert "2025-01-01T09:00:00+08:00" in result.stdout
    assert "name=王小明" in result.stdout and "…" not in result.stdout


def test_history_marks_a_voided_event_with_its_correction(run):
    mistaken = deposit(amount="500.00")
    fix = correction(mistaken["event_id"])
    run("ingest", "-", stdin=jsonl(registered(), mistaken, deposit(at="2025-01-05T09:00:00+08:00"), fix))
    text = run("history", "C1").stdout
    assert text.count("voided by") == 1
    assert f"voided by {fix['event_id']}" in text
    mistaken_entry = text[text.index(f"id {mistaken['event_id']}") :]
    assert mistaken_entry.index("voided by") < mistaken_entry.index("amount=500.00"), "under the voided event"


def test_history_of_an_unknown_customer_is_an_error(run):
    assert run("init").returncode == 0
    result = run("history", "NOBODY")
    assert result.returncode == 2
    assert result.stderr.strip() == "timeline: error: unknown customer NOBODY: no events stored"


def test_verify_says_intact_and_exits_0(run):
    run("ingest", "-", stdin=jsonl(registered(), deposit()))
    result = run("verify", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "intact": True,
        "customers": 1,
        "events": 2,
        "pii_checked": True,
        "findings": [],
        "access_findings": [],
        "policy_findings": [],
    }


def test_verify_counts_one_customer_in_the_singular(run):
    run("ingest", "-", stdin=jsonl(registered(), deposit()))
    assert run("verify").stdout.strip() == "verified 1 customer, 2 events: intact"
