"""Validation in a worker process gives what validation in the ingesting process gives, line for line."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys

import pytest

import timeline.application.prepare as prepare
from tests.conftest import KEK
from tests.factories import deposit, registered, visit
from timeline.application.jsonl import read_lines
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _lines() -> list[bytes]:
    """A mixed input: events, duplicates, conflicts, every kind of bad line."""
    events = [registered()] + [
        visit(at=f"2025-02-{day:02d}T09:{minute:02d}:00+08:00") for day in range(1, 10) for minute in range(0, 60, 7)
    ]
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in events]
    dep = deposit()
    changed = copy.deepcopy(dep)
    changed["data"]["amount"] = "7.00"
    no_id = visit(at="2025-03-01T09:00:00+08:00")
    del no_id["event_id"]
    lines[20:20] = [
        json.dumps(dep).encode(),
        json.dumps(dep, indent=1).replace("\n", " ").encode(),
        json.dumps(changed).encode(),
        b"",
        b"   ",
        b'{"type": "visit.recorded", "type": "x"}',
        b"{not json",
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        json.dumps({**visit(), "data": {"channel": "pigeon", "purpose": "x"}}).encode(),
        json.dumps({**visit(), "occurred_at": "2099-01-01T00:00:00Z"}).encode(),
        json.dumps({**deposit(amount="1e3")}).encode(),
        json.dumps(no_id).encode(),
        json.dumps(
            {
                **visit(),
                "type": "referral.qualified",
                "data": {"referred_customer_id": "C9", "referral_event_id": dep["event_id"]},
            }
        ).encode(),
    ]
    return lines


def _ingest(url: str, lines: list[bytes], worker: bool) -> list[tuple]:
    engine = Engine(open_store(url), KeyWrapper(KEK))
    try:
        ingestor = engine.ingestor(clock=lambda: NOW, batch_size=7)
        ingestor.validation_worker = worker
        return [
            (o.line, o.status, o.error, o.event_id if o.status != "accepted" else None)
            for o in ingestor.ingest(read_lines(lines))
        ]
    finally:
        engine.close()


@pytest.fixture
def small_frames(monkeypatch):
    """Frames of five lines, so that a short input is long enough for a worker."""
    monkeypatch.setattr(prepare, "LINES_PER_FRAME", 5)


def test_outcomes_are_the_same_with_and_without_the_worker(small_frames, tmp_path):
    lines = _lines()
    with_worker = _ingest(f"sqlite:///{tmp_path / 'a.db'}", lines, worker=True)
    without = _ingest(f"sqlite:///{tmp_path / 'b.db'}", lines, worker=False)
    assigned = [(line, status, error, event_id is not None) for line, status, error, event_id in with_worker]
    assert assigned == [(line, status, error, event_id is not None) for line, status, error, event_id in without]
    assert {status for _, status, _, _ in with_worker} == {"accepted", "duplicate", "rejected"}


def test_a_worker_prepares_exactly_what_this_process_prepares(small_frames):
    lines = _lines()
    here = list(prepare.prepared_lines(read_lines(lines), workers=False))
    there = list(prepare.prepared_lines(read_lines(lines)))
    assert [_comparable(r) for r in there] == [_comparable(r) for r in here]
    assert len(here) == len(lines) - 2  # blank lines are no events


def _comparable(item):
    number, result = item
    if isinstance(result, prepare.Refused):
        return number, "refused", result.reason, result.claimed_id
    same_id = result.event_id if result.sent else None
    content = {**result.content, "event_id": None} if not result.sent else result.content
    return number, content, same_id, result.occurred_at, result.occurred_at.tzinfo


@pytest.mark.parametrize(
    "command",
    [
        ["/nonexistent/python"],  # cannot start
        [sys.executable, "-c", "import sys; sys.stdin.buffer.read(7)"],  # starts, then stops without answering
    ],
)
def test_lines_a_worker_never_answered_are_prepared_here(small_frames, monkeypatch, caplog, command):
    monkeypatch.setattr(prepare, "_worker_command", lambda: command)
    lines = _lines()
    expected = [_comparable(r) for r in prepare.prepared_lines(read_lines(lines), workers=False)]
    assert [_comparable(r) for r in prepare.prepared_lines(read_lines(lines))] == expected
    assert "validating" in caplog.text and "in this process" in caplog.text


def test_a_worker_that_stops_half_way_loses_no_line(small_frames, monkeypatch, caplog):
    """The worker answers two frames, then dies: the rest is prepared here, in order."""
    script = (
        "import sys, timeline.application.prepare as p\n"
        "for _ in range(2):\n"
        "    body = p._read_frame(sys.stdin.buffer)\n"
        "    import pickle\n"
        "    p._write_frame(sys.stdout.buffer, pickle.dumps("
        "[p._sent(n, r) for n, raw in pickle.loads(body) if (r := p.prepare_line(raw)) is not None]))\n"
        "sys.exit(9)\n"
    )
    monkeypatch.setattr(prepare, "_worker_command", lambda: [sys.executable, "-c", script])
    lines = _lines()
    expected = [_comparable(r) for r in prepare.prepared_lines(read_lines(lines), workers=False)]
    assert [_comparable(r) for r in prepare.prepared_lines(read_lines(lines))] == expected
    assert "the validation worker stopped (exit code 9)" in caplog.text


def test_an_input_that_fails_to_read_fails_the_ingest(small_frames):
    def broken():
        yield from _lines()[:12]
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        list(prepare.prepared_lines(read_lines(broken())))


def test_stopping_early_stops_the_worker(small_frames):
    results = prepare.prepared_lines(read_lines(_lines() * 5))
    assert next(results)[0] == 1
    results.close()  # must not hang, and leaves no worker behind
