"""``timeline whatif`` as a user meets it: JSON lines then a summary, tables for people, exit 0, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import deposit, registered
from tests.test_policy_schema import changed

TIMELINE = str(Path(sys.executable).with_name("timeline"))
EVENTS = [
    registered("C1", at="2025-01-01T09:00:00+08:00"),
    deposit("C1", at="2025-01-02T09:00:00+08:00", amount="60000.00"),
    registered("C2", at="2025-01-01T09:00:00+08:00", branch_id="BR002"),
    deposit("C2", at="2025-01-02T09:00:00+08:00", amount="90000.00"),
]
AS_OF = "2025-03-01"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    where = tmp_path_factory.mktemp("whatif")
    db = f"sqlite:///{where / 'store.db'}"
    events = where / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in EVENTS) + "\n", encoding="utf-8")
    done = subprocess.run([TIMELINE, "ingest", str(events), "--db", db], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    candidate = where / "candidate.json"
    candidate.write_text(json.dumps(changed("id", "raise-80k", changed("tier.tiers.1.threshold", "80000"))))
    return db, candidate


def run(*args: str) -> subprocess.CompletedProcess[str]:
    wide = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([TIMELINE, "whatif", *args], capture_output=True, text=True, env=wide)


def test_json_is_one_line_per_differing_customer_then_the_summary(store):
    db, candidate = store
    done = run("--policy", str(candidate), "--db", db, "--as-of", AS_OF, "--json")
    assert done.returncode == 0, done.stderr
    *customers, last = [json.loads(line) for line in done.stdout.splitlines()]
    assert [c["customer_id"] for c in customers] == ["C1"]
    assert {k: customers[0]["current"][k] for k in ("tier", "lifecycle", "points", "aum", "tier_rule")} == {
        "tier": "affluent",
        "lifecycle": "new",
        "points": 600,
        "aum": "60000.00",
        "tier_rule": "upgrade after hold",
    }
    assert customers[0]["candidate"]["tier"] == "mass" and customers[0]["candidate"]["policy"] == "raise-80k"
    summary = last["summary"]
    assert (summary["customers"], summary["differing"]) == (2, 1)
    assert summary["tier_moves"] == [{"from": "affluent", "to": "mass", "customers": 1}]
    assert set(summary) >= {"entering_at_risk", "leaving_at_risk", "points_outstanding", "tiers"}


def test_no_difference_is_still_exit_0_with_a_summary(store):
    db, candidate = store
    done = run("--policy", str(candidate), "--db", db, "--as-of", AS_OF, "--branch", "BR002", "--json")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert json.loads(line)["summary"]["differing"] == 0 and json.loads(line)["summary"]["customers"] == 1


def test_people_read_the_summary_tables(store):
    db, candidate = store
    done = run("--policy", str(candidate), "--db", db, "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert (
        "what-if: candidate raise-80k in force from the beginning, against the current versions "
        "(bank-default-v1 in force as of then)"
    ) in text
    assert "2 customers compared, 1 differ (nothing was written)" in text
    for title in ("Customers per tier", "Tier moves", "Lifecycle stages", "At risk and points owed"):
        assert title in text
    assert "2025-03-01T23:59:59.999999+08:00 (end of day)" in text


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--policy", "missing.json"], "timeline: error: cannot read the candidate policy 'missing.json'"),
        (
            ["--from", "2025-02-30"],
            "timeline: error: '2025-02-30' is not a date (YYYY-MM-DD) or an instant with offset",
        ),
        (["--as-of", "soon"], "timeline: error: "),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(store, args, line):
    db, candidate = store
    given = ["--policy", str(candidate), *args] if args[0] != "--policy" else args
    done = run(*given, "--db", db)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(line), done.stderr


def test_from_a_date_puts_the_candidate_in_force_from_its_first_instant(store):
    db, candidate = store
    after = run("--policy", str(candidate), "--db", db, "--as-of", AS_OF, "--from", "2025-03-02", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout.splitlines()[-1])["summary"]["differing"] == 0
    before = run("--policy", str(candidate), "--db", db, "--as-of", AS_OF, "--from", "2025-01-01", "--json")
    assert json.loads(before.stdout.splitlines()[-1])["summary"]["differing"] == 1
    shown = run("--policy", str(candidate), "--db", db, "--as-of", AS_OF, "--from", "2025-01-01")
    assert "in force from 2025-01-01T00:00:00+08:00" in shown.stdout
