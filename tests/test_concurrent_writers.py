"""Concurrent writers: separate OS processes ingest into the same customers at the same time.

DESIGN.md, "Concurrent writers": a writer that lost the race on a stream
version (or an event id) re-reads, re-checks and retries its batch, so every
event ends up stored exactly once, each stream stays contiguous (1..n) and its
hash chain intact, and every sender hears "accepted" or "duplicate" for each of
its events, never silence and never a spurious rejection.

The processes are real (``spawn``), each with its own connections, started
together at a barrier, writing small batches so that they collide often.
PostgreSQL is the production case; SQLite (busy timeout) is run the same way.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEK
from tests.factories import deposit, registered, visit
from tests.test_immutability import Raw
from timeline.application.verify import verify
from timeline.crypto import KeyWrapper, _b64e
from timeline.engine import Engine
from timeline.store import open_store

TIMELINE = str(Path(sys.executable).with_name("timeline"))
CUSTOMERS = [f"K{n}" for n in range(8)]


def fixed_clock() -> dt.datetime:
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _writer(url: str, events: list[dict[str, Any]], batch_size: int, barrier: Any, results: Any) -> None:
    """One process: wait for the others, ingest, report each event's outcome."""
    store = None
    try:
        store = open_store(url)
        ingestor = Engine(store, KeyWrapper(KEK)).ingestor(clock=fixed_clock, batch_size=batch_size)
        barrier.wait(timeout=60)
        started = time.time()
        outcomes = [(str(o.event_id), o.status, o.error) for o in ingestor.ingest(list(enumerate(events, 1)))]
        results.put((os.getpid(), outcomes, None, (started, time.time())))
    except BaseException as exc:  # report, so the test shows it instead of hanging on the queue
        results.put((os.getpid(), [], f"{type(exc).__name__}: {exc}", (0.0, 0.0)))
    finally:
        if store is not None:
            store.close()


def run_writers(url: str, inputs: list[list[dict[str, Any]]], batch_size: int = 5) -> list[list[tuple]]:
    """Each input ingested by its own process, all at once; each process's outcomes, in input order."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(inputs))
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, events, batch_size, barrier, results)) for events in inputs]
    for p in procs:
        p.start()
    reports = [results.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    errors = [e for _, _, e, _ in reports if e]
    assert errors == [], errors
    windows = sorted(w for *_, w in reports)
    assert all(later[0] < earlier[1] for earlier, later in zip(windows, windows[1:], strict=False)), (
        "the writers did not ingest at the same time"
    )
    by_pid = {pid: outcomes for pid, outcomes, _, _ in reports}
    return [by_pid[p.pid] for p in procs]


def visits_for(tag: str, count: int) -> list[dict[str, Any]]:
    """``count`` events round-robin over all customers: visits and deposits, in business order."""
    events = []
    for n in range(count):
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        at = f"2025-03-{1 + n // 200:02d}T{(n // 60) % 24:02d}:{n % 60:02d}:00+08:00"
        make = deposit if n % 3 == 0 else visit
        extra = {"amount": f"{n + 1}.00"} if make is deposit else {"purpose": f"{tag}-{n}"}
        events.append(make(customer, at=at, **extra))
    return events


def register_all(url: str) -> list[dict[str, Any]]:
    regs = [registered(c) for c in CUSTOMERS]
    store = open_store(url)
    try:
        out = list(Engine(store, KeyWrapper(KEK)).ingestor(clock=fixed_clock).ingest(list(enumerate(regs, 1))))
        assert {o.status for o in out} == {"accepted"}
    finally:
        store.close()
    return regs


def assert_store_consistent(url: str, expected_ids: set[str]) -> None:
    """Every expected event stored exactly once, contiguous streams, intact chains."""
    raw = Raw(url)
    try:
        rows = raw.rows("SELECT originator_id, originator_version, state FROM timeline_events")
        stored_ids = Counter(json.loads(bytes(state))["event_id"] for _, _, state in rows)
        assert [i for i, n in stored_ids.items() if n > 1] == [], "stored twice"
        assert set(stored_ids) == expected_ids
        index = raw.rows("SELECT event_id FROM timeline_event_index")
        assert sorted(str(r[0]) for r in index) == sorted(expected_ids)
        versions: dict[str, list[int]] = {}
        for customer, version, _ in rows:
            versions.setdefault(customer, []).append(version)
        for customer, seen in versions.items():
            assert sorted(seen) == list(range(1, len(seen) + 1)), f"{customer} is not contiguous"
        heads = dict(raw.rows("SELECT customer_id, version FROM timeline_heads"))
        assert heads == {c: len(v) for c, v in versions.items()}
    finally:
        raw.close()
    store = open_store(url)
    try:
        report = verify(store)
        assert report.intact, report.findings
        assert report.events == len(expected_ids)
    finally:
        store.close()


@pytest.mark.parametrize("writers", [2, 3])
def test_writers_appending_to_the_same_customers_lose_nothing(db_url, writers):
    regs = register_all(db_url)
    inputs = [visits_for(f"w{n}", 160) for n in range(writers)]
    reports = run_writers(db_url, inputs)
    for events, outcomes in zip(inputs, reports, strict=True):
        assert [(eid, status) for eid, status, _ in outcomes] == [(e["event_id"], "accepted") for e in events], [
            err for _, _, err in outcomes if err
        ]
    expected = {e["event_id"] for e in regs} | {e["event_id"] for events in inputs for e in events}
    assert_store_consistent(db_url, expected)


def test_writers_with_overlapping_inputs_store_each_event_once(db_url):
    """Both inputs hold the registrations and a shared middle part; each event is accepted exactly once."""
    regs = [registered(c) for c in CUSTOMERS]
    body = visits_for("shared", 240)
    inputs = [regs + body[:160], regs + body[80:]]
    reports = run_writers(db_url, inputs, batch_size=7)
    accepted: Counter[str] = Counter()
    for events, outcomes in zip(inputs, reports, strict=True):
        assert [eid for eid, _, _ in outcomes] == [e["event_id"] for e in events]
        bad = [(eid, status, err) for eid, status, err in outcomes if status not in ("accepted", "duplicate")]
        assert bad == []
        accepted.update(eid for eid, status, _ in outcomes if status == "accepted")
    everything = {e["event_id"] for e in regs + body}
    assert set(accepted) == everything and set(accepted.values()) == {1}, "each event accepted exactly once"
    assert_store_consistent(db_url, everything)


def test_the_same_input_ingested_by_two_processes_at_once_is_stored_once(db_url):
    events = [registered(c) for c in CUSTOMERS] + visits_for("same", 160)
    reports = run_writers(db_url, [events, events], batch_size=10)
    per_event = [
        sorted(status for status in statuses) for statuses in zip(*[[s for _, s, _ in r] for r in reports], strict=True)
    ]
    assert set(map(tuple, per_event)) == {("accepted", "duplicate")}
    assert_store_consistent(db_url, {e["event_id"] for e in events})


def test_two_cli_ingests_of_overlapping_files_at_once(db_url, tmp_path):
    """The same through ``timeline ingest``: summaries add up, nothing rejected, nothing stored twice."""
    regs = [registered(c) for c in CUSTOMERS]
    body = visits_for("cli", 300)
    files = []
    for n, part in enumerate([regs + body[:200], regs + body[100:]]):
        path = tmp_path / f"part{n}.jsonl"
        path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in part), encoding="utf-8")
        files.append((path, len(part)))
    env = {**os.environ, "TIMELINE_DB": db_url, "TIMELINE_KEK": _b64e(KEK)}
    open_store(db_url).close()  # create the schema first: both processes race on data, not on DDL
    procs = [
        subprocess.Popen(
            [TIMELINE, "ingest", str(path), "--batch-size", "9"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path, _ in files
    ]
    summaries = []
    for proc, (_, size) in zip(procs, files, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        summary = json.loads(err.strip().splitlines()[-1])["summary"]
        assert summary["accepted"] + summary["duplicate"] == size and summary["rejected"] == 0
        summaries.append(summary)
    everything = {e["event_id"] for e in regs + body}
    assert sum(s["accepted"] for s in summaries) == len(everything)
    assert_store_consistent(db_url, everything)


def test_a_writer_whose_cached_stream_is_stale_still_recognises_a_duplicate(engine, clock):
    """Deterministic form of a race the process tests above hit: writer A has C1's stream cached, writer B
    appends to C1, then A meets B's event again. A must answer "duplicate" from the index (and re-read C1),
    not index its stale cache (seen: IndexError in ingest, which killed the whole ``timeline ingest``)."""
    a = engine.ingestor(clock=clock)
    b = engine.ingestor(clock=clock)
    assert [o.status for o in a.ingest([(1, registered()), (2, visit())])] == ["accepted", "accepted"]
    theirs = deposit(at="2025-02-01T09:00:00+08:00")
    assert b.ingest_one(copy.deepcopy(theirs)).status == "accepted"
    assert a.ingest_one(copy.deepcopy(theirs)).status == "duplicate"
    mine = visit(at="2025-03-01T09:00:00+08:00")
    assert [o.status for o in a.ingest([(1, copy.deepcopy(theirs)), (2, mine)])] == ["duplicate", "accepted"]
    assert [r.version for r in engine.store.read_stream("C1")] == [1, 2, 3, 4]
    assert verify(engine.store).intact


def _open_and_close(path: str, barrier: Any, results: Any) -> None:
    barrier.wait(timeout=60)
    try:
        open_store(f"sqlite:///{path}").close()
        results.put(None)
    except BaseException as exc:  # report, so the test shows it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_sqlite_file_at_once_all_get_the_store(tmp_path):
    """The first to switch a new file to WAL locks the others out at once: each waits its turn and opens it."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(5):
        barrier, results = ctx.Barrier(3), ctx.Queue()
        path = tmp_path / f"new-{round_}.db"
        procs = [ctx.Process(target=_open_and_close, args=(str(path), barrier, results)) for _ in range(3)]
        for p in procs:
            p.start()
        errors = [error for error in (results.get(timeout=90) for _ in procs) if error]
        for p in procs:
            p.join(timeout=30)
        assert errors == []
