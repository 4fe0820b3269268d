"""No input stops a run: each hostile line is rejected on its own, in one line, and the rest goes on.

Every kind is tried in the ingesting process (a small input) and through the
validation worker (an input of more than two frames).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import timeline.application.prepare as prepare
from tests.conftest import KEK
from tests.factories import deposit, event, registered, visit
from timeline.application.jsonl import MAX_LINE_BYTES, read_lines
from timeline.crypto import KeyWrapper, new_kek_text
from timeline.engine import Engine
from timeline.store import open_store

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TIMELINE = str(Path(sys.executable).with_name("timeline"))


def _line(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _visit_with(**envelope) -> bytes:
    return _line({**visit(), **envelope})


def _followup(due: str) -> bytes:
    return _line(
        event(
            "followup.scheduled",
            "C1",
            "2025-01-03T09:00:00+08:00",
            {"followup_id": "F1", "due_date": due, "reason": "call"},
        )
    )


def _nested(levels: int) -> bytes:
    notes = "[" * levels + "]" * levels
    return _visit_with()[:-2] + f', "notes": {notes}}}}}'.encode()


HOSTILE = {
    "nested_300_levels_in_data": (_nested(300), "nested more than 32 levels deep"),
    "nested_10000_levels": (b"[" * 10_000 + b"]" * 10_000, "nested more than 32 levels deep"),
    "nested_1000000_levels_unclosed": (b"{" + b'"a":[' * 1 + b"[" * 1_000_000, "nested more than 32 levels deep"),
    "occurred_at_in_year_1": (
        _visit_with(occurred_at="0001-01-01T00:00:00+08:00"),
        "occurred_at: must be on or after 1900",
    ),
    "occurred_at_in_year_1_utc": (
        _visit_with(occurred_at="0001-01-01T00:00:00Z"),
        "occurred_at: must be on or after 1900",
    ),
    "occurred_at_past_year_9999_in_utc": (
        _visit_with(occurred_at="9999-12-31T23:59:59-05:00"),
        "occurred_at: must not be after the time of recording",
    ),
    "occurred_at_in_year_9999": (_visit_with(occurred_at="9999-12-31T23:59:59Z"), "after the time of recording"),
    "occurred_at_on_a_leap_second": (_visit_with(occurred_at="2016-12-31T23:59:60Z"), "occurred_at:"),
    "birth_date_in_year_1": (_line(registered("C2", birth_date="0001-01-01")), "data.birth_date: must be on or after"),
    "birth_date_after_the_registration": (
        _line(registered("C2", at="2025-01-01T09:00:00+08:00", birth_date="2025-01-03")),
        "data.birth_date: 2025-01-03 is after the registration",
    ),
    "due_date_in_year_9999": (_followup("9999-12-31"), "data.due_date: must be from 1900-01-01 to 2199-12-31"),
    "invalid_utf8": (b'{"type": "visit.recorded", "x": "\xff\xfe"}', "line is not UTF-8"),
    "a_nul_byte": (_visit_with()[:-1] + b"\x00}", "malformed JSON"),
    "a_lone_surrogate": (_visit_with()[:-2] + b', "notes": "\\ud800"}}', "data.notes"),
    "a_no_break_space_before_the_object": ("\u00a0".encode() + _visit_with(), "malformed JSON"),
    "a_vertical_tab_before_the_object": (b"\x0b" + _visit_with(), "malformed JSON"),
    "a_number_of_100000_digits": (
        _line(deposit(amount="X")).replace(b'"X"', b"1" * 100_000),
        "longer than 100 characters",
    ),
    "a_fraction_of_100000_digits": (
        _line(deposit(amount="X")).replace(b'"X"', b"1." + b"1" * 100_000),
        "longer than 100 characters",
    ),
    "a_huge_exponent": (_line(deposit(amount="X")).replace(b'"X"', b"1e999999999"), "data.amount"),
    "a_huge_exponent_in_an_integer_field": (
        _line(event("survey.completed", "C1", "2025-01-03T09:00:00+08:00", {"score": 1})).replace(
            b'"score": 1', b'"score": 1e999999999'
        ),
        "data.score",
    ),
    "a_line_over_1_mib": (_visit_with()[:-2] + b', "notes": "' + b"x" * MAX_LINE_BYTES + b'"}}', "line is longer than"),
}


def _input(hostile: bytes, valid_after: int) -> list[bytes]:
    head = [_line(registered()), _line(deposit())]
    start = dt.datetime(2025, 2, 1, 9, tzinfo=dt.UTC)
    tail = [_line(visit(at=(start + dt.timedelta(minutes=n)).isoformat())) for n in range(valid_after)]
    return [line + b"\n" for line in [*head, hostile, *tail]]


def _outcomes(tmp_path, lines: list[bytes], worker: bool) -> list:
    engine = Engine(open_store(f"sqlite:///{tmp_path / 'store.db'}"), KeyWrapper(KEK))
    try:
        ingestor = engine.ingestor(clock=lambda: NOW, batch_size=4)
        ingestor.validation_worker = worker
        return list(ingestor.ingest(read_lines(lines)))
    finally:
        engine.close()


@pytest.fixture
def small_frames(monkeypatch):
    """Frames of five lines: twelve lines take the worker path."""
    monkeypatch.setattr(prepare, "LINES_PER_FRAME", 5)


@pytest.mark.parametrize("worker", [False, True], ids=["in_process", "via_worker"])
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_line_is_rejected_alone_and_the_rest_is_ingested(small_frames, tmp_path, kind, worker):
    hostile, reason = HOSTILE[kind]
    outcomes = _outcomes(tmp_path, _input(hostile, valid_after=12), worker)
    assert [o.line for o in outcomes] == list(range(1, 16))
    assert [o.status for o in outcomes] == ["accepted"] * 2 + ["rejected"] + ["accepted"] * 12
    assert reason in outcomes[2].error
    assert "\n" not in outcomes[2].error and len(outcomes[2].error) < 1100


@pytest.mark.parametrize("worker", [False, True], ids=["in_process", "via_worker"])
def test_an_offset_of_23_59_is_an_instant_like_any_other(small_frames, tmp_path, worker):
    lines = _input(_visit_with(occurred_at="2025-01-04T00:00:00+23:59"), valid_after=12)
    assert {o.status for o in _outcomes(tmp_path, lines, worker)} == {"accepted"}


_FAILING_VALIDATOR = """
import timeline.application.prepare as p
original = p.parse_event
def parse_event(raw):
    if raw.get("data", {}).get("purpose") == "trip the bug":
        raise ZeroDivisionError("a bug in validation")
    return original(raw)
p.parse_event = parse_event
"""


@pytest.mark.parametrize("worker", [False, True], ids=["in_process", "via_worker"])
def test_an_unexpected_error_validating_a_line_is_that_lines_rejection_and_logged_as_a_bug(
    small_frames, tmp_path, monkeypatch, capfd, caplog, worker
):
    bug: dict = {}
    exec(_FAILING_VALIDATOR.replace("p.parse_event = parse_event", ""), bug)
    monkeypatch.setattr(prepare, "parse_event", bug["parse_event"])  # this process's validation has the bug
    monkeypatch.setattr(
        prepare, "_worker_command", lambda: [sys.executable, "-c", _FAILING_VALIDATOR + "p.main()"]
    )  # and so has the worker's
    outcomes = _outcomes(tmp_path, _input(_line(visit(purpose="trip the bug")), valid_after=12), worker)
    assert [o.status for o in outcomes] == ["accepted"] * 2 + ["rejected"] + ["accepted"] * 12
    assert outcomes[2].error == "internal error validating this line: ZeroDivisionError: a bug in validation"
    logged = capfd.readouterr().err + caplog.text
    assert "bug: validating line 3 failed unexpectedly" in logged
    assert "Traceback" in logged and "ZeroDivisionError" in logged


_DYING_WORKER = """
import os, pickle, sys, timeline.application.prepare as p
while (body := p._read_frame(sys.stdin.buffer)):
    frame = pickle.loads(body)
    if any(isinstance(raw, bytes) and b"kill the worker" in raw for _, raw in frame):
        os._exit(3)
    p._write_frame(sys.stdout.buffer, pickle.dumps([p._sent(n, r) for n, raw in frame if (r := p.prepare_line(raw))]))
p._write_frame(sys.stdout.buffer, b"")
"""


def test_a_worker_that_dies_on_a_line_leaves_its_lines_to_this_process(small_frames, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(prepare, "_worker_command", lambda: [sys.executable, "-c", _DYING_WORKER])
    lines = _input(_line(visit(purpose="kill the worker")), valid_after=30)
    lines[20:20] = [b"{broken\n"]
    outcomes = _outcomes(tmp_path, lines, worker=True)
    assert "the validation worker stopped (exit code 3)" in caplog.text
    assert [o.line for o in outcomes] == list(range(1, len(lines) + 1))
    assert [o.line for o in outcomes if o.status == "rejected"] == [21]
    assert sum(o.status == "accepted" for o in outcomes) == len(lines) - 1


# The command line


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "TIMELINE_DB": f"sqlite:///{tmp_path / 'cli.db'}", "TIMELINE_KEK": new_kek_text()}

    def run(*args: str, stdin: bytes | None = None, program: str = TIMELINE) -> subprocess.CompletedProcess:
        return subprocess.run([program, *args], input=stdin, capture_output=True, env=env, cwd=tmp_path, timeout=120)

    return run


def _stored(tmp_path) -> int:
    store = open_store(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        return store.head_position()
    finally:
        store.close()


def _jsonl(*events: dict) -> bytes:
    return b"".join(_line(e) + b"\n" for e in events)


def test_a_file_starting_with_a_byte_order_mark_is_ingested(run, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _jsonl(registered(), visit()))
    result = run("ingest", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.splitlines()[-1]) == {"summary": {"accepted": 2, "duplicate": 0, "rejected": 0}}


def test_standard_input_starting_with_a_byte_order_mark_is_ingested(run):
    result = run("ingest", "-", stdin=b"\xef\xbb\xbf" + _jsonl(registered(), visit()))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.splitlines()[-1])["summary"]["accepted"] == 2


HINT = "timeline: error: the input looks like a JSON array, not JSON Lines: convert it with  jq -c '.[]' FILE"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps([registered(), visit()], indent=2).encode(),
        json.dumps([registered(), visit()]).encode() + b"\n",
        b"\n\n   [" + _line(registered()) + b",\n" + _line(visit()) + b"]\n",
        b"\xef\xbb\xbf" + json.dumps([registered()]).encode(),
    ],
    ids=["pretty_printed", "on_one_line", "after_blank_lines", "after_a_byte_order_mark"],
)
def test_a_json_array_is_refused_at_once_with_a_hint_and_nothing_stored(run, tmp_path, text):
    path = tmp_path / "array.json"
    path.write_bytes(text)
    result = run("ingest", str(path))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [HINT]
    assert _stored(tmp_path) == 0
    assert run("ingest", "-", stdin=text).stderr.decode().splitlines() == [HINT]


def test_a_hostile_line_in_a_file_is_one_reject_line_then_the_summary_and_exit_1(run, tmp_path):
    path = tmp_path / "in.jsonl"
    lines = _input(_nested(300), valid_after=2_500)  # long enough for the worker
    lines[1000:1000] = [_visit_with(occurred_at="0001-01-01T00:00:00+08:00") + b"\n"]
    path.write_bytes(b"".join(lines))
    result = run("ingest", str(path))
    assert result.returncode == 1
    reports = [json.loads(line) for line in result.stderr.decode().splitlines()]
    assert [r["line"] for r in reports[:-1]] == [3, 1001]
    assert reports[-1] == {"summary": {"accepted": len(lines) - 2, "duplicate": 0, "rejected": 2}}


def test_a_300_mb_line_is_skipped_while_reading_in_bounded_memory(run, tmp_path):
    """The over-long line is rejected, the lines after it are ingested, and it is never held whole."""
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as fh:
        fh.write(_jsonl(registered()))
        fh.write(_visit_with()[:-2] + b', "notes": "')
        block = b"x" * (1 << 20)
        for _ in range(300):
            fh.write(block)
        fh.write(b'"}}\n')
        fh.write(_jsonl(visit(), deposit()))
    measured = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
        "sys.stderr.buffer.write(done.stderr)\n"
        "sys.exit(done.returncode)\n"
    )
    result = run("-c", measured, TIMELINE, "ingest", str(path), program=sys.executable)
    reports = [json.loads(line) for line in result.stderr.decode().splitlines()]
    assert result.returncode == 1
    assert reports[0]["line"] == 2 and "line is longer than 1048576 bytes" in reports[0]["error"]
    assert reports[-1] == {"summary": {"accepted": 3, "duplicate": 0, "rejected": 1}}
    peak_kib = int(result.stdout)
    assert peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB"
