"""Two ``timeline policy publish`` at once (issue 13): exactly one version is stored, the other command says so in
one line and exits 1, nothing of it is stored, and ``verify`` finds the policy stream intact.

Real processes on PostgreSQL and on SQLite. Both read the stream while the test holds the store's write lock on
``timeline_meta``, so both decide on the same stream and meet at the write; the lock is let go once both wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KEK
from tests.factories import deposit, registered
from tests.test_policy_versions_store import BASE, B, K, variant
from timeline.application.policy_store import PolicyStream
from timeline.application.verify import verify
from timeline.crypto import KeyWrapper
from timeline.domain.errors import ConcurrencyConflict
from timeline.engine import Engine
from timeline.store import open_store
from timeline.store.memory import MemoryEventStore

TIMELINE = str(Path(sys.executable).with_name("timeline"))
Blocked = Callable[[list[subprocess.Popen]], bool]
"""Whether these processes all wait for the write lock."""


def policy_file(tmp_path: Path, policy_id: str, threshold: str) -> str:
    path = tmp_path / f"{policy_id}.json"
    path.write_text(json.dumps(variant(policy_id, threshold).model_dump(mode="json")))
    return str(path)


def publishing(url: str, path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [TIMELINE, "policy", "publish", path, "--effective-from", "2025-03-01", "--db", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )


@contextlib.contextmanager
def writes_held(url: str) -> Iterator[Blocked]:
    """Hold the write lock of ``timeline_meta`` (reads go on); yields a wait for ``n`` processes blocked on it."""
    if url.startswith("postgresql"):
        with psycopg.connect(url) as conn:
            conn.execute("LOCK TABLE timeline_meta IN SHARE ROW EXCLUSIVE MODE")  # blocks INSERT, not SELECT

            def waiting(processes: list[subprocess.Popen]) -> bool:
                with psycopg.connect(url) as other:
                    (n,) = other.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                        " WHERE c.relname = 'timeline_meta' AND NOT l.granted"
                    ).fetchone()
                return n == len(processes)

            yield waiting
            conn.rollback()
        return
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # the write lock; in WAL mode readers go on
    cpu: dict[int, list[int]] = {}

    def idle(processes: list[subprocess.Popen]) -> bool:
        """Each process asleep in SQLite's busy handler: its CPU time has not moved for a second."""
        for p in processes:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            seen = cpu.setdefault(p.pid, [])
            seen.append(int(fields[11]) + int(fields[12]))
            if fields[0] != "S" or len(seen) < 5 or len(set(seen[-5:])) != 1:
                return False
        return True

    yield idle
    conn.execute("ROLLBACK")
    conn.close()


def wait_until(condition: Blocked, processes: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition(processes):
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        assert time.monotonic() < deadline, "the publishes never reached the write"
        time.sleep(0.2)


@pytest.mark.timeout(180)
def test_two_publishes_at_once_store_exactly_one_and_the_other_says_so(db_url, tmp_path):
    store = open_store(db_url)
    try:
        engine = Engine(store, KeyWrapper(KEK))
        at = "2025-01-0{}T09:00:00+08:00"
        events = [registered("C1", at=at.format(1)), deposit("C1", at=at.format(2), amount="60000.00")]
        assert {o.status for o in engine.ingestor().ingest(list(enumerate(events, 1)))} == {"accepted"}
    finally:
        store.close()
    files = {"raise-a": policy_file(tmp_path, "raise-a", "70000"), "raise-b": policy_file(tmp_path, "raise-b", "80000")}

    with writes_held(db_url) as blocked:
        processes = {name: publishing(db_url, path) for name, path in files.items()}
        wait_until(blocked, list(processes.values()))
    results = {name: (p.wait(60), *p.communicate()) for name, p in processes.items()}

    [winner] = [name for name, (code, _, _) in results.items() if code == 0]
    [loser] = [name for name, (code, _, _) in results.items() if code != 0]
    code, out, err = results[loser]
    assert (code, out) == (1, ""), results
    assert err.splitlines() == [
        f"timeline: error: policy {winner} was published as entry 1 meanwhile; nothing of {loser} was stored:"
        " run the command again"
    ]
    assert results[winner][1].startswith(f"published {winner} in force from 2025-03-01"), results

    store = open_store(db_url, create=False)
    try:
        assert [(e.seq, e.version.id) for e in PolicyStream(store, BASE).entries()] == [(1, winner)]
        assert verify(store).policy_findings == []
    finally:
        store.close()
    checked = subprocess.run([TIMELINE, "verify", "--db", db_url], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    again = publishing(db_url, files[loser])  # run again, as the line says: chained after the winner
    assert again.wait(60) == 0, again.communicate()
    store = open_store(db_url, create=False)
    try:
        assert [e.version.id for e in PolicyStream(store, BASE).entries()] == [winner, loser]
        assert verify(store).policy_findings == []
    finally:
        store.close()


def test_a_publish_resting_on_a_stream_that_grew_since_stores_nothing():
    store = MemoryEventStore()
    reader, other = PolicyStream(store, BASE), PolicyStream(store, BASE)
    read = len(reader.entries())
    other.publish(variant("first"), B, K)

    with pytest.raises(ConcurrencyConflict) as refused:
        reader.publish(variant("second", "90000"), B, K, after=read)

    assert str(refused.value) == (
        "policy first was published as entry 1 meanwhile; nothing of second was stored: run the command again"
    )
    assert [e.version.id for e in PolicyStream(store, BASE).entries()] == ["first"]
