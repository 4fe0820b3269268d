"""The read side of the CLI as a user meets it: ``state``, ``explain``, ``followups``, ``demo``.

Real processes of the installed ``timeline`` against a SQLite file (one
PostgreSQL case): exit codes, one line per mistake, JSON shapes. The branch
below is ingested once per module; every command after that only reads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.factories import deposit, event, registered, visit, withdrawal
from timeline.crypto import new_kek_text

TIMELINE = str(Path(sys.executable).with_name("timeline"))
BIG = deposit("C1", at="2025-01-02T09:00:00+08:00", amount="100000.00", product="time", term_months=12)
EARLY_VISIT = visit("C1", at="2025-01-05T09:00:00+08:00")


def scheduled(customer_id: str, followup_id: str, due: str, at: str = "2025-01-10T09:00:00+08:00") -> dict:
    data = {"followup_id": followup_id, "due_date": due, "reason": f"call about {followup_id}"}
    return event("followup.scheduled", customer_id, at, data)


def completed(customer_id: str, followup_id: str, at: str = "2025-01-20T09:00:00+08:00") -> dict:
    return event("followup.completed", customer_id, at, {"followup_id": followup_id, "outcome": "done"})


BRANCH = [
    registered("C1", at="2025-01-01T09:00:00+08:00"),
    BIG,
    EARLY_VISIT,
    withdrawal("C1", at="2025-03-01T23:00:00+08:00", amount="40000.00"),
    scheduled("C1", "F1", "2025-03-01"),
    scheduled("C1", "F2", "2025-04-30"),
    scheduled("C1", "F3", "2025-02-01"),
    completed("C1", "F3"),
    registered("C2", at="2025-01-01T10:00:00+08:00", branch_id="BR002", relationship_manager="RM002"),
    deposit("C2", at="2025-01-03T09:00:00+08:00", amount="2000.00"),
    scheduled("C2", "F1", "2025-02-01"),
    registered("C3", at="2025-01-01T11:00:00+08:00"),
    event("customer.profile_updated", "C3", "2025-01-20T09:00:00+08:00", {"relationship_manager": "RM003"}),
    scheduled("C3", "F9", "2025-02-15"),
]
"""C1: 100,000.00 (affluent after 7 days), 40,000.00 out late on 1 March; three follow-ups, one done.
C2: another branch and RM. C3: moved from RM001 to RM003 before its follow-up."""


def jsonl(*events: dict) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)


class Cli:
    def __init__(self, db_url: str, cwd: Path) -> None:
        self.env = {**os.environ, "TIMELINE_DB": db_url, "TIMELINE_KEK": new_kek_text()}
        self.cwd = cwd

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TIMELINE, *args], input=stdin, capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=300
        )

    def with_env(self, **extra: str) -> Cli:
        """The same store and key, with more environment variables."""
        other = Cli.__new__(Cli)
        other.env, other.cwd = {**self.env, **extra}, self.cwd
        return other

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> dict:
        [line] = self.ok(*args, "--json").splitlines()
        return json.loads(line)

    def lines(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self.ok(*args, "--json").splitlines()]

    def fails(self, *args: str) -> str:
        """Run a command that must fail as a user mistake: exit 2, one line on stderr, no traceback."""
        result = self(*args)
        assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("timeline: error: "), line
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        return line


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    """A SQLite branch: BRANCH ingested in one process, then a late visit in another (to test --known-at)."""
    folder = tmp_path_factory.mktemp("cli-state")
    run = Cli(f"sqlite:///{folder / 'branch.db'}", folder)
    run.ok("ingest", "-", stdin=jsonl(*BRANCH))
    time.sleep(0.05)
    run.between = dt.datetime.now(dt.UTC).isoformat()  # type: ignore[attr-defined]
    time.sleep(0.05)
    run.ok("ingest", "-", stdin=jsonl(visit("C1", at="2025-02-20T09:00:00+08:00")))
    return run


Q = "2025-02-01T00:00:00+08:00"


# --- state -------------------------------------------------------------------------------------


def test_state_json_is_one_object_with_the_contract_fields(cli):
    state = cli.json("state", "C1", "--as-of", Q)
    assert {"customer_id", "as_of", "known_at", "policy", "tier", "lifecycle", "points", "aum"} <= set(state)
    assert state["customer_id"] == "C1"
    assert state["as_of"] == "2025-01-31T16:00:00Z"
    assert state["policy"] == "bank-default-v1"
    assert state["tier"] == "affluent"
    assert state["lifecycle"] == "new"
    assert state["points"] == 0 and isinstance(state["points"], int), "the deposit vests only on 1 February"
    assert state["aum"] == "100000.00" and isinstance(state["aum"], str)
    # One second later the 12-month time deposit has vested: 1,000 units of 100, doubled.
    later = cli.json("state", "C1", "--as-of", "2025-02-01T09:00:00+08:00")
    assert later["points"] == 2000
    assert Decimal(later["aum"]) == Decimal("100000")


def test_as_of_accepts_an_instant_with_any_offset_or_a_date(cli):
    # The withdrawal happened at 23:00 in Shanghai on 1 March: 15:00Z.
    before = cli.json("state", "C1", "--as-of", "2025-03-01T14:59:59Z")
    after = cli.json("state", "C1", "--as-of", "2025-03-01T10:00:00-05:00")
    assert (before["aum"], after["aum"]) == ("100000.00", "60000.00")
    # A date means the end of that day in the policy's time zone: the 23:00 withdrawal counts.
    day = cli.json("state", "C1", "--as-of", "2025-03-01")
    assert day["aum"] == "60000.00"
    assert day["as_of"] == "2025-03-01T15:59:59.999999Z"
    assert cli.json("state", "C1", "--as-of", "2025-02-28")["aum"] == "100000.00"


def test_known_at_accepts_an_instant_or_a_date_and_hides_what_was_recorded_later(cli):
    now = cli.json("state", "C1", "--as-of", "2025-03-01")
    earlier = cli.json("state", "C1", "--as-of", "2025-03-01", "--known-at", cli.between)
    assert earlier["known_at"] != now["known_at"]
    assert now["last_activity_at"] == "2025-03-01T15:00:00Z"
    # The late visit of 20 February was recorded after `between`; the withdrawal of 1 March before.
    full = cli.json("state", "C1", "--as-of", "2025-02-25")
    known = cli.json("state", "C1", "--as-of", "2025-02-25", "--known-at", cli.between)
    assert full["last_activity_at"] == "2025-02-20T01:00:00Z"
    assert known["last_activity_at"] == "2025-01-05T01:00:00Z"
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date().isoformat()
    assert (
        cli.json("state", "C1", "--as-of", "2025-02-25", "--known-at", tomorrow)["last_activity_at"]
        == (full["last_activity_at"])
    )
    # Known at a day before anything was stored, the customer does not exist yet.
    line = cli.fails("state", "C1", "--known-at", "2020-01-01")
    assert "C1" in line


@pytest.mark.parametrize("option", ["--as-of", "--known-at"])
def test_a_naive_timestamp_is_one_line_and_exit_2(cli, option):
    line = cli.fails("state", "C1", option, "2025-03-01T10:00:00")
    assert "offset" in line
    assert "not a date" in cli.fails("state", "C1", option, "yesterday")


def test_state_all_is_one_json_line_per_customer_equal_to_state_of_each(cli):
    times = ["--as-of", "2025-03-02T12:00:00+08:00", "--known-at", "2029-01-01T00:00:00Z"]
    every = cli.lines("state", "--all", *times)
    assert [s["customer_id"] for s in every] == ["C1", "C2", "C3"]
    for line in every:
        assert cli.json("state", line["customer_id"], *times) == line
    # Customers not registered as of Q are left out.
    early = ["--as-of", "2025-01-01T10:30:00+08:00", "--known-at", "2029-01-01T00:00:00Z"]
    assert [s["customer_id"] for s in cli.lines("state", "--all", *early)] == ["C1", "C2"]


def test_state_all_needs_json_and_a_customer_or_all(cli):
    assert "--json" in cli.fails("state", "--all")
    assert "--all" in cli.fails("state")
    assert cli.fails("state", "C1", "--all", "--json") == "timeline: error: give a customer id or --all, not both"


def test_state_human_output(cli):
    text = cli.ok("state", "C1", "--as-of", "2025-03-02")
    for fragment in ("customer C1", "affluent", "AUM", "60,000.00", "points", "bank-default-v1", "RM001"):
        assert fragment in text, fragment


def test_state_for_people_shows_instants_in_the_policys_zone_and_a_date_as_its_end(cli):
    text = cli.ok("state", "C1", "--as-of", "2025-03-02")
    assert "2025-03-02T23:59:59.999999+08:00 (end of day)" in text, "--as-of DATE echoed as that day's end"
    assert "2025-01-09T09:00:00+08:00" in text, "the upgrade (since 01:00Z), in Shanghai time"
    assert "15:59:59.999999Z" not in text


def test_unknown_customer_is_one_line_and_exit_2(cli):
    for command in ("state", "explain"):
        line = cli.fails(command, "NOBODY")
        assert "NOBODY" in line and "unknown customer" in line
    assert "not registered" in cli.fails("state", "C1", "--as-of", "2024-12-31")


# --- explain -----------------------------------------------------------------------------------


def test_explain_json_has_rules_event_ids_and_the_points_ledger(cli):
    why = cli.json("explain", "C1", "--as-of", "2025-03-02")
    assert why["customer_id"] == "C1" and why["tier"] == "affluent"
    tier = why["tier_explained"]
    assert tier["rule"] and tier["event_ids"]
    assert BIG["event_id"] in tier["event_ids"]
    assert [(c["from"], c["to"]) for c in tier["changes"]] == [("mass", "affluent")]
    assert tier["changes"][0]["at"] == "2025-01-09T01:00:00Z", "upgrade after the 7-day hold"
    stage = why["lifecycle_explained"]
    assert stage["stage"] == why["lifecycle"] and stage["rule"]
    assert isinstance(stage["event_ids"], list)
    ledger = why["points_explained"]["ledger"]
    [vest] = [line for line in ledger if line["kind"] == "vest"]
    assert vest == {**vest, "points": 2000, "bucket": 2025, "event_ids": [BIG["event_id"]]}
    assert vest["at"] == "2025-02-01T01:00:00Z"
    assert why["points_explained"]["available"] == why["points"] == 2000
    assert {f["followup_id"] for f in why["followups"]} == {"F1", "F2"}


def test_explain_human_output(cli):
    text = cli.ok("explain", "C1", "--as-of", "2025-03-02")
    for fragment in ("Tier", "Lifecycle", "points ledger", "vest", "tier changes", BIG["event_id"][:8]):
        assert fragment in text, fragment


# --- follow-ups --------------------------------------------------------------------------------


def _ids(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["customer_id"], r["followup_id"]) for r in rows]


def test_followups_overdue_for_one_rm(cli):
    rows = cli.lines("followups", "--rm", "RM001", "--overdue", "--as-of", "2025-03-02")
    # C1/F1 is due 1 March (overdue on the 2nd); F2 is not due yet; F3 is done; C2 is RM002's; C3 is RM003's now.
    assert _ids(rows) == [("C1", "F1")]
    assert rows[0] == {**rows[0], "overdue": True, "relationship_manager": "RM001", "branch_id": "BR001"}
    assert rows[0]["due_date"] == "2025-03-01"
    # On its due date it is not overdue yet; "a date" is the end of that day in Shanghai.
    assert cli.lines("followups", "--rm", "RM001", "--overdue", "--as-of", "2025-03-01") == []
    # Half past midnight in Shanghai on 2 March is still 1 March in UTC: the policy's date decides.
    assert _ids(cli.lines("followups", "--rm", "RM001", "--overdue", "--as-of", "2025-03-01T16:30:00Z")) == [
        ("C1", "F1")
    ]


def test_followups_open_per_rm_and_branch(cli):
    q = ["--as-of", "2025-03-02"]
    assert _ids(cli.lines("followups", "--rm", "RM001", *q)) == [("C1", "F1"), ("C1", "F2")]
    assert _ids(cli.lines("followups", "--rm", "RM003", *q)) == [("C3", "F9")], "listed under the RM as of Q"
    assert _ids(cli.lines("followups", "--branch", "BR002", *q)) == [("C2", "F1")]
    assert _ids(cli.lines("followups", "--branch", "BR001", "--overdue", *q)) == [("C1", "F1"), ("C3", "F9")]
    every = cli.lines("followups", *q)
    assert sorted(_ids(every)) == [("C1", "F1"), ("C1", "F2"), ("C2", "F1"), ("C3", "F9")]
    # As of 15 January C3 was still RM001's, and C1's F3 was not completed yet; sorted by due date.
    early = cli.lines("followups", "--rm", "RM001", "--as-of", "2025-01-15")
    assert _ids(early) == [("C1", "F3"), ("C3", "F9"), ("C1", "F1"), ("C1", "F2")]
    assert [r["overdue"] for r in early] == [False] * 4
    assert cli.lines("followups", "--rm", "RM404", *q) == []


def test_followups_human_output(cli):
    text = cli.ok("followups", "--rm", "RM001", "--as-of", "2025-03-02")
    for fragment in ("2 open follow-ups", "C1", "F1", "F2", "OVERDUE", "2025-04-30"):
        assert fragment in text, fragment
    assert "F9" not in text
    single = cli.ok("followups", "--rm", "RM003", "--as-of", "2025-03-02")
    assert single.splitlines()[0].strip() == "1 open follow-up"


def test_followups_overdue_for_people_says_how_many_of_how_many_open(cli):
    text = cli.ok("followups", "--rm", "RM001", "--overdue", "--as-of", "2025-03-02")
    assert "1 overdue of 2 open follow-ups" in text
    assert "F1" in text and "F2" not in text


def test_explain_for_people_sums_up_deposits_that_vest_nothing(tmp_path):
    run = Cli(f"sqlite:///{tmp_path / 'timeline.db'}", tmp_path)
    gone = deposit("C1", at="2025-01-02T09:00:00+08:00", amount="1000.00")
    held = deposit("C1", at="2025-01-03T09:00:00+08:00", amount="5000.00", account_id="A2")
    out = withdrawal("C1", at="2025-01-04T09:00:00+08:00", amount="1000.00")
    run.ok("ingest", "-", stdin=jsonl(registered("C1"), gone, held, out))
    ledger = run.json("explain", "C1", "--as-of", "2025-03-02")["points_explained"]["ledger"]
    assert sorted(line["points"] for line in ledger if line["kind"] == "vest") == [0, 50], "JSON keeps every line"
    text = run.ok("explain", "C1", "--as-of", "2025-03-02")
    assert "│ +50 " in text and "│ +0 " not in text
    assert "left out: 1 deposit vesting no points" in text


def test_progress_bars_on_a_terminal_leave_stdout_to_the_answers(cli):
    """With stderr a terminal (rich told so by TTY_COMPATIBLE), the bars draw before any total is known."""
    terminal = cli.with_env(TTY_COMPATIBLE="1", NO_COLOR="1")
    fixed = ("--as-of", Q)
    for args in (("state", "--all", *fixed, "--known-at", "2099-01-01", "--json"), ("followups", *fixed, "--json")):
        result = terminal(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert [json.loads(line) for line in result.stdout.splitlines()] == cli.lines(*args[:-1])
    result = terminal("ingest", "-", stdin=jsonl(visit("C2", at="2025-02-21T09:00:00+08:00")))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


# --- PostgreSQL, and the demo ----------------------------------------------------------------------


def test_state_and_followups_on_postgresql(pg_url, tmp_path):
    run = Cli(pg_url, tmp_path)
    run.ok("ingest", "-", stdin=jsonl(*BRANCH))
    state = run.json("state", "C1", "--as-of", "2025-03-02")
    assert (state["tier"], state["aum"], state["points"]) == ("affluent", "60000.00", 2000)
    assert run.lines("state", "--all", "--as-of", "2025-03-02", "--known-at", "2099-01-01")[0] == run.json(
        "state", "C1", "--as-of", "2025-03-02", "--known-at", "2099-01-01"
    )
    assert _ids(run.lines("followups", "--rm", "RM001", "--overdue", "--as-of", "2025-03-02")) == [("C1", "F1")]
    assert "NOBODY" in run.fails("state", "NOBODY")


def test_demo_runs_a_small_branch_and_prints_every_section(tmp_path):
    env = {**os.environ, "TIMELINE_KEK": new_kek_text()}
    env.pop("TIMELINE_DB", None)
    result = subprocess.run(
        [TIMELINE, "demo", "--customers", "60", "--years", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for section in ("Tier distribution", "Lifecycle funnel", "At risk", "Top referrers", "Overdue follow-ups"):
        assert section in result.stdout, section
    assert "events ingested (0 rejected" in result.stderr  # a generated branch is valid whenever it is run
    assert (tmp_path / "timeline-demo.db").exists()
    # The demo's database is an ordinary store: the CLI reads it.
    explore = [line for line in result.stdout.splitlines() if line.startswith("Explore: timeline explain ")]
    assert explore
    customer = explore[0].split()[3]
    again = subprocess.run(
        [TIMELINE, "state", customer, "--json", "--db", "sqlite:///timeline-demo.db"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["customer_id"] == customer
