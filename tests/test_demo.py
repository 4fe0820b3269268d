"""The demo ingests in two rounds, so that asking as known at an instant between them shows a changed past."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from timeline.crypto import new_kek_text
from timeline.synthetic.generate import arrivals
from timeline.synthetic.rounds import Rounds

TIMELINE = str(Path(sys.executable).with_name("timeline"))
END = dt.date(2025, 12, 31)
KEK = new_kek_text()


def test_round_two_holds_the_late_arrivals_and_corrections_and_the_erasures_after_them():
    seen = list(arrivals(200, 2, 1, END))
    rounds = Rounds(seen)
    first = list(rounds.first())
    late = [a.event for a in seen if a.late]
    corrections = [a.event for a in seen if a.event["type"] == "correction.recorded"]
    assert late and corrections
    assert [e for e in rounds.later if e["type"] != "customer.erased"] == [
        a.event for a in seen if a.late or a.event["type"] == "correction.recorded"
    ]
    position = {a.event["event_id"]: n for n, a in enumerate(seen)}
    for part in (first, rounds.later):  # each round in file order, together every event once
        assert [position[e["event_id"]] for e in part] == sorted(position[e["event_id"]] for e in part)
    assert sorted(position[e["event_id"]] for e in first + rounds.later) == list(range(len(seen)))
    # Nothing of a customer comes after its erasure, whichever round it lands in.
    for stream in (first, first + rounds.later):
        erased: set[str] = set()
        for e in stream:
            assert e["customer_id"] not in erased, e
            if e["type"] == "customer.erased":
                erased.add(e["customer_id"])


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TIMELINE_KEK": KEK}
    env.pop("TIMELINE_DB", None)
    result = subprocess.run([TIMELINE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


def test_the_demo_prints_a_customer_whose_state_as_known_between_the_rounds_differs_from_now(tmp_path):
    demo = run(tmp_path, "demo", "--customers", "150", "--years", "1")
    assert "events ingested (0 rejected" in demo.stderr
    explore = [line for line in demo.stdout.splitlines() if line.startswith("Explore: timeline explain ")]
    assert len(explore) == 1
    command = explore[0].removeprefix("Explore: timeline ").split()
    customer, known_at = command[1], command[command.index("--known-at") + 1]
    then = json.loads(run(tmp_path, *command, "--json").stdout)
    now = json.loads(run(tmp_path, "explain", customer, "--db", "sqlite:///timeline-demo.db", "--json").stdout)
    headline = ("aum", "points", "tier", "lifecycle")
    assert [then[k] for k in headline] != [now[k] for k in headline]
    assert dt.datetime.fromisoformat(then["known_at"]) == dt.datetime.fromisoformat(known_at)
    # The line before says what changed, in the demo's words.
    lines = demo.stdout.splitlines()
    said = lines[lines.index(explore[0]) - 1]
    assert said.startswith(f"Known at {known_at} → now, {customer}: ") and "round 2 brought it" in said
