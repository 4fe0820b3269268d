"""``timeline branch`` and ``timeline worklist``: the application's tables, printed as they are.

Real processes of the installed ``timeline`` on a SQLite file: ``--json``
prints exactly the tables the application layer gives (so a page showing
them shows the CLI's figures), and a mistake is one line and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import deposit, registered, withdrawal
from tests.support.feedback import profile, survey
from tests.support.instants import utc
from timeline.application.branch_report import branch_report
from timeline.application.states import StateReader
from timeline.application.worklist import worklist
from timeline.crypto import KekSource, new_kek_text
from timeline.engine import open_engine

TIMELINE = str(Path(sys.executable).with_name("timeline"))
KEK = new_kek_text()
Q = "2025-05-01T12:00:00+08:00"
BRANCH = [
    registered("C1", birth_date="1980-05-03"),
    deposit("C1", at="2025-01-02T09:00:00+08:00", amount="20000.00"),
    withdrawal("C1", at="2025-04-20T09:00:00+08:00", amount="15000.00"),
    profile("C1", "2025-01-03T09:00:00+08:00", key_person=True),
    survey("C1", "2025-03-01T09:00:00+08:00", 4),
    registered("C2", branch_id="BR002", relationship_manager="RM002"),
]


def run(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TIMELINE_DB": url, "TIMELINE_KEK": KEK}
    return subprocess.run([TIMELINE, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli-branch') / 'branch.db'}"
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in BRANCH)
    assert run(url, "ingest", "-", stdin=lines).returncode == 0
    return url


def json_lines(url: str, *args: str) -> list[dict]:
    result = run(url, *args, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_branch_json_prints_the_application_report_table_by_table(url):
    printed = json_lines(url, "branch", "BR001", "--as-of", Q, "--known-at", "2030-01-01")
    engine = open_engine(url, kek=KekSource(text=KEK), create=False)
    try:
        reader = StateReader(engine.store, engine.policy)
        report = branch_report(reader, engine.policy, "BR001", utc(Q), utc("2030-01-01T23:59:59.999999+08:00"))
    finally:
        engine.close()
    assert printed == [t.to_json() for t in report.tables]
    at_risk = next(t for t in printed if t["name"] == "at-risk")
    assert at_risk["rows"][0][:2] == ["C1", "key person"]


def test_worklist_json_prints_the_application_worklist_with_decrypted_birthdays(url):
    printed = json_lines(url, "worklist", "RM001", "--as-of", Q, "--known-at", "2030-01-01")
    engine = open_engine(url, kek=KekSource(text=KEK), create=False)
    try:
        reader = StateReader(engine.store, engine.policy)
        work = worklist(
            reader, engine.policy, "RM001", utc(Q), utc("2030-01-01T23:59:59.999999+08:00"), keys=engine.keyring()
        )
    finally:
        engine.close()
    assert printed == [t.to_json() for t in work.tables]
    birthdays = next(t for t in printed if t["name"] == "birthdays")
    assert birthdays["rows"] == [["C1", "key person", "2025-05-03", "2", "45"]]


def test_branch_for_one_rm_and_the_human_tables(url):
    result = run(url, "branch", "BR001", "--rm", "RM001", "--as-of", Q)
    assert result.returncode == 0, result.stderr
    for title in ("Tier distribution", "Lifecycle funnel", "At risk: 1 customers", "Survey scores by RM"):
        assert title in result.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (("branch", "BR009"), "no customer is with branch BR009 as of "),
        (("branch", "BR001", "--rm", "RM002"), "no customer is with relationship manager RM002 of branch BR001"),
        (("worklist", "RM404"), "no customer is with relationship manager RM404 as of "),
        (("branch", "BR001", "--as-of", "yesterday"), "not a date or an ISO 8601 instant: 'yesterday'"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(url, args, says):
    result = run(url, *args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("timeline: error: ") and says in line, line
    assert result.stdout == ""
