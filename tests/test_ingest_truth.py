"""Acceptance against the store's truth, and qualification in place (DESIGN.md, "Concurrent writers").

Every verdict that depends on stored state holds against what is committed
when the batch commits: a writer whose cached view went stale decides again.
A referral's qualification is appended in the transaction of the event that
made it hold, so batch sizes, splits of the input, other processes and
crashes cannot change it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KEK
from tests.factories import deposit, event, registered, withdrawal
from tests.support.backends import every_backend
from tests.test_immutability import Raw
from tests.test_tamper_evidence import guards_off
from timeline.application.ingest import cache
from timeline.application.states import StateReader
from timeline.crypto import KeyWrapper, _b64e
from timeline.engine import Engine
from timeline.store import open_store
from timeline.synthetic.generate import generate_branch

pytestmark = every_backend  # the ingest rules, on every store

TIMELINE = str(Path(sys.executable).with_name("timeline"))
CRASHING = str(Path(__file__).with_name("crashing_ingest.py"))
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _clock() -> dt.datetime:
    return NOW


def referral(referrer: str, referred: str, at: str) -> dict[str, Any]:
    return event("referral.made", referrer, at, {"referred_customer_id": referred})


def redemption(customer: str, at: str, points: int) -> dict[str, Any]:
    return event("points.redeemed", customer, at, {"points": points, "reward": "tea set"})


def correction(customer: str, at: str, target: dict[str, Any]) -> dict[str, Any]:
    return event("correction.recorded", customer, at, {"voids_event_id": target["event_id"], "reason": "entered twice"})


# --- A stale view is decided again ------------------------------------------------------------------------------


def test_a_writer_that_saw_a_customer_unregistered_accepts_their_events_once_another_registered_them(engine):
    mine = engine.ingestor(clock=_clock)
    theirs = engine.ingestor(clock=_clock)
    [early] = mine.ingest([(1, deposit("X", at="2025-01-02T09:00:00+08:00"))])
    assert early.status == "rejected" and "not registered" in early.error  # true when it was decided
    assert theirs.ingest_one(registered("X")).status == "accepted"
    later = [deposit("X", at=f"2025-01-0{n}T09:00:00+08:00", amount="10.00") for n in range(2, 6)]
    assert [o.status for o in mine.ingest(list(enumerate(later, 1)))] == ["accepted"] * 4


def test_a_writer_whose_known_customer_was_extended_by_another_decides_on_the_stored_stream(engine):
    mine = engine.ingestor(clock=_clock)
    theirs = engine.ingestor(clock=_clock)
    assert [o.status for o in mine.ingest([(1, registered("C1")), (2, deposit("C1", amount="100.00"))])] == [
        "accepted",
        "accepted",
    ]
    assert theirs.ingest_one(deposit("C1", at="2025-01-02T10:00:00+08:00", amount="1000.00")).status == "accepted"
    [outcome] = mine.ingest([(1, withdrawal("C1", at="2025-01-03T09:00:00+08:00", amount="500.00"))])
    assert (outcome.status, outcome.error) == ("accepted", None)


# --- The same outcomes whatever the batches and splits -------------------------------------------------------------

A_REGISTERED = "2025-01-01T09:00:00+08:00"
R_REGISTERED = "2025-02-01T09:00:00+08:00"
R_DEPOSIT = "2025-03-01T10:00:00+08:00"


def _scenario() -> list[dict[str, Any]]:
    """Referrals, a redemption of the qualification's points at once, a referral voided later in the input."""
    made_r = referral("A", "R", R_REGISTERED)
    made_s = referral("B", "S", "2025-02-02T09:00:00+08:00")
    return [
        registered("A", at=A_REGISTERED),
        registered("B", at=A_REGISTERED),
        made_r,
        registered("R", at=R_REGISTERED),
        made_s,
        registered("S", at="2025-02-02T09:00:00+08:00"),
        deposit("R", at=R_DEPOSIT, amount="10000.00"),
        redemption("A", "2025-03-01T11:00:00+08:00", 500),  # only the qualification's 500 points make it valid
        deposit("S", at=R_DEPOSIT, amount="20000.00"),
        correction("B", "2025-03-02T09:00:00+08:00", made_s),  # after S's deposit: S's qualification stands
        redemption("B", "2025-03-03T11:00:00+08:00", 500),
        deposit("R", at="2025-04-01T10:00:00+08:00", amount="5.00"),
    ]


def _outcomes_and_states(url: str, inputs: list[list[dict[str, Any]]], batch_size: int) -> tuple[list, list]:
    store = open_store(url)
    try:
        engine = Engine(store, KeyWrapper(KEK))
        outcomes = []
        for part in inputs:
            ingestor = engine.ingestor(clock=_clock, batch_size=batch_size)
            outcomes += [(o.line, o.status, o.error) for o in ingestor.ingest(list(enumerate(part, 1)))]
        return outcomes, [s.to_json() for s in StateReader(store, engine.policy).all_states(NOW, NOW)]
    finally:
        store.close()


def _parts(events: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    edges = [0, *sorted(set(cuts)), len(events)]
    return [events[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def test_a_redemption_right_after_the_qualifying_deposit_and_a_referral_voided_later_hold_in_one_batch(sqlite_url):
    outcomes, states = _outcomes_and_states(sqlite_url, [_scenario()], batch_size=1000)
    assert [status for _, status, _ in outcomes] == ["accepted"] * len(_scenario()), outcomes
    points = {s["customer_id"]: s["points"] for s in states}
    assert points["A"] == 0 and points["B"] == 0  # each earned 500 and redeemed 500


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(batch_size=st.integers(1, 13), cuts=st.lists(st.integers(1, 11), max_size=3))
def test_any_batch_size_and_any_split_of_the_input_give_the_same_outcomes_and_states(
    tmp_path_factory, batch_size, cuts
):
    events = _scenario()
    baseline = _outcomes_and_states(f"sqlite:///{tmp_path_factory.mktemp('one')}/t.db", [events], 1000)
    url = f"sqlite:///{tmp_path_factory.mktemp('split')}/t.db"
    outcomes, states = _outcomes_and_states(url, _parts(events, cuts), batch_size)
    assert [s for _, s, _ in outcomes] == [s for _, s, _ in baseline[0]]
    assert states == baseline[1]


def test_a_stream_cache_far_smaller_than_the_input_gives_the_same_outcomes_and_states(tmp_path, monkeypatch):
    """Streams dropped from a bounded cache are read again: the bound costs time, never a verdict."""
    events = _scenario()
    baseline = _outcomes_and_states(f"sqlite:///{tmp_path / 'roomy.db'}", [events], 3)
    monkeypatch.setattr(cache, "MAX_CACHED_EVENTS", 2)
    monkeypatch.setattr(cache, "MAX_HISTORY_EVENTS", 2)
    assert _outcomes_and_states(f"sqlite:///{tmp_path / 'tight.db'}", [events], 3) == baseline


# --- Real processes ------------------------------------------------------------------------------------------------


def _history(tmp_path: Path, customers: int = 40) -> list[str]:
    """A generated branch with the referral scenario above in its middle (late events, as branches send them)."""
    lines = [json.dumps(e, ensure_ascii=False) for e in generate_branch(customers, 1, 3, dt.date(2026, 6, 30))]
    middle = len(lines) // 2
    lines[middle:middle] = [json.dumps(e, ensure_ascii=False) for e in _scenario()]
    (tmp_path / "all.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "TIMELINE_DB": url, "TIMELINE_KEK": _b64e(KEK)}


def _summary(stderr: str) -> dict[str, int]:
    return json.loads(stderr.strip().splitlines()[-1])["summary"]


def _sequential_states(tmp_path: Path) -> list[str]:
    url = f"sqlite:///{tmp_path / 'sequential.db'}"
    done = subprocess.run([TIMELINE, "ingest", str(tmp_path / "all.jsonl")], env=_env(url), capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return _states(url)


def _states(url: str) -> list[str]:
    done = subprocess.run(
        [TIMELINE, "state", "--all", "--json", "--as-of", "2026-07-01", "--known-at", "2099-01-01"],
        env=_env(url),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_three_overlapping_ingests_at_once_refuse_nothing_and_store_each_event_once(db_url, tmp_path):
    """Each process sends its part in input order, so every event's prerequisites reach the store first:
    no verdict may depend on which process got there first."""
    lines = _history(tmp_path)
    parts = [lines[: len(lines) * 6 // 10], lines[: len(lines) * 8 // 10], lines]
    for n, part in enumerate(parts):
        (tmp_path / f"part{n}.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
    assert subprocess.run([TIMELINE, "init"], env=_env(db_url), cwd=tmp_path).returncode == 0
    procs = [
        subprocess.Popen(
            [TIMELINE, "ingest", f"part{n}.jsonl", "--batch-size", str(size)],
            env=_env(db_url),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, size in enumerate([50, 200, 1000])
    ]
    summaries = []
    for proc, part in zip(procs, parts, strict=True):
        _, err = proc.communicate(timeout=300)
        summary = _summary(err)
        assert summary["rejected"] == 0, err[-3000:]
        assert summary["accepted"] + summary["duplicate"] == len(part)
        summaries.append(summary)
    assert sum(s["accepted"] for s in summaries) == len(lines)
    assert _states(db_url) == _sequential_states(tmp_path)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_any_commit_loses_no_qualification(sqlite_url, tmp_path, when):
    """SIGKILL just before and just after each commit of a batched ingest; the same ingest again ends
    with the store an uncrashed ingest gives (the referrers' 500 points included)."""
    lines = _history(tmp_path, customers=25)
    expected = _sequential_states(tmp_path)
    path = tmp_path / "all.jsonl"
    commits = 0
    while True:
        commits += 1
        url = f"sqlite:///{tmp_path / f'crash-{when}-{commits}.db'}"
        crashed = subprocess.run(
            [sys.executable, CRASHING, when, str(commits), "ingest", str(path), "--batch-size", "300"],
            env=_env(url),
            capture_output=True,
            text=True,
        )
        again = subprocess.run([TIMELINE, "ingest", str(path)], env=_env(url), capture_output=True, text=True)
        assert _summary(again.stderr)["rejected"] == 0, again.stderr[-2000:]
        assert _states(url) == expected, f"crash {when} commit {commits}"
        if crashed.returncode == 0:  # the ingest had fewer commits than that: every commit point was tried
            assert _summary(crashed.stderr)["accepted"] == len(lines)
            break
        assert crashed.returncode == -9, crashed.stderr[-2000:]


def test_a_pii_event_of_a_customer_whose_data_key_was_deleted_is_rejected_alone(engine, db_url):
    """The key table changed outside the engine (triggers bypassed): that customer's PII cannot be sealed,
    so the event is refused with one line, and the rest of the input is stored."""
    assert engine.ingestor(clock=_clock).ingest_one(registered("C1")).status == "accepted"
    raw = Raw(db_url)
    try:
        with guards_off(raw):
            raw.execute("DELETE FROM timeline_keys WHERE customer_id = 'C1'")
    finally:
        raw.close()
    phone = event("customer.profile_updated", "C1", "2025-01-05T09:00:00+08:00", {"phone": "+86 139 0000 0000"})
    inputs = [phone, deposit("C1", at="2025-01-06T09:00:00+08:00"), registered("C2")]
    outcomes = list(Engine(engine.store, engine.wrapper).ingestor(clock=_clock).ingest(list(enumerate(inputs, 1))))
    assert [o.status for o in outcomes] == ["rejected", "accepted", "accepted"]
    assert "has no data key" in outcomes[0].error and "run `timeline verify`" in outcomes[0].error


def test_requalify_appends_a_qualification_missing_from_a_store_written_without_one(engine):
    """The repair tool: a store written by an ingestor that decided no qualification (as an older version could
    leave one after a crash) gets each missing one, once."""
    from timeline.application.ingest import Ingestor
    from timeline.engine import acceptance_rules

    blind = Ingestor(engine.store, engine.wrapper, acceptance_rules(engine.policy), clock=_clock)
    events = _scenario()[:7]  # up to R's qualifying deposit
    assert {o.status for o in blind.ingest(list(enumerate(events, 1)))} == {"accepted"}
    appended = engine.requalify(clock=_clock)
    assert [(o.status, o.customer_id) for o in appended] == [("accepted", "A")]
    assert engine.requalify(clock=_clock) == []
