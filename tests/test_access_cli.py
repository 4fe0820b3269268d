"""Issue 11: ``timeline access grant|revoke|list|log``, and the access tables of a store made before them.

Mistakes are checked as the user sees them, through ``timeline``'s ``main``
with the ``access`` sub-app added (one line, exit 2); the rest runs the
sub-app in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from timeline.application.access import TOKEN_PREFIX, AccessTrail, Grants
from timeline.cli.access import access_app
from timeline.domain.roles import Action, Principal, Role
from timeline.store import open_store
from timeline.store.access_sql import ACCESS_TABLES, access_store

WITH_ACCESS = "from timeline.cli import main; main.main()"


def _main(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TIMELINE_DB": url}
    return subprocess.run(
        [sys.executable, "-c", WITH_ACCESS, "access", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture
def timeline(sqlite_url):
    """Run ``timeline access …`` on a fresh store, in-process; a failure raises its error."""
    open_store(sqlite_url).close()
    runner = CliRunner()

    def run(*args: str):
        done = runner.invoke(access_app, list(args), env={"TIMELINE_DB": sqlite_url, "COLUMNS": "200"})
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            raise done.exception
        assert done.exit_code == 0, done.output
        return done

    return run


def test_grant_prints_the_token_once_alone_on_the_last_line(timeline, sqlite_url):
    done = timeline("grant", "li.ming", "--role", "rm", "--rm", "RM1")
    token = done.stdout.splitlines()[-1]
    assert token.startswith(TOKEN_PREFIX) and " " not in token
    store = open_store(sqlite_url, create=False)
    try:
        assert Grants(access_store(store)).authenticate(token) == Principal("li.ming", Role.RM, rm="RM1")
    finally:
        store.close()
    listed = timeline("list")
    assert "li.ming" in listed.stdout and "RM1" in listed.stdout and token not in listed.stdout


def test_grant_json_is_one_object_with_name_role_and_token(timeline):
    done = timeline("grant", "audit.zhang", "--role", "compliance", "--json")
    [line] = done.stdout.splitlines()
    granted = json.loads(line)
    assert set(granted) == {"name", "role", "token"}
    assert (granted["name"], granted["role"]) == ("audit.zhang", "compliance")


def test_revoke_then_list_shows_when(timeline):
    timeline("grant", "ops.chen", "--role", "ops")
    assert timeline("revoke", "ops.chen").stdout.strip() == "revoked ops.chen"
    [grant] = [json.loads(line) for line in timeline("list", "--json").stdout.splitlines()]
    assert grant["name"] == "ops.chen" and grant["revoked_at"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("grant", "x", "--role", "admin"), "unknown role 'admin': one of compliance, branch_head, rm, ops, source"),
        (("grant", "x", "--role", "rm"), "role rm needs the relationship manager it acts as (rm)"),
        (("grant", "x", "--role", "ops", "--branch", "B1"), "branch applies only to role branch_head, not ops"),
        (("revoke", "nobody"), "nobody holds no active grant"),
    ],
)
def test_a_mistake_is_one_line_on_stderr_and_exit_2(sqlite_url, args, message):
    open_store(sqlite_url).close()
    done = _main(sqlite_url, *args)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"timeline: error: {message}"]
    assert done.stdout == ""


def test_log_reads_the_trail_by_customer_and_principal(timeline, sqlite_url):
    store = open_store(sqlite_url, create=False)
    try:
        trail = AccessTrail(access_store(store))
        trail.append(Principal("audit.zhang", Role.COMPLIANCE), "C1", Action.HISTORY_PII, "complaint 17")
        trail.append(Principal("li.ming", Role.RM, rm="RM1"), "C2", Action.STATE)
    finally:
        store.close()
    records = [json.loads(line) for line in timeline("log", "--customer", "C1", "--json").stdout.splitlines()]
    assert [(r["principal"], r["what"], r["purpose"]) for r in records] == [
        ("audit.zhang", "history_pii", "complaint 17")
    ]
    shown = timeline("log", "--principal", "li.ming").stdout
    assert "C2" in shown and "C1" not in shown


def _without_access_tables(url: str) -> None:
    """A store as made before grants existed."""
    store = open_store(url)
    store.close()
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
    else:
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
    for table in ACCESS_TABLES:
        conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()


def test_reading_a_store_made_before_grants_sees_none_and_adds_no_table(db_url):
    _without_access_tables(db_url)
    store = open_store(db_url, create=False)
    try:
        access = access_store(store)
        assert Grants(access).list() == []
        assert Grants(access).authenticate(TOKEN_PREFIX + "x" * 43) is None
        assert list(AccessTrail(access).read()) == []
        assert not access.has_access_tables()
    finally:
        store.close()


def test_opening_an_older_store_to_write_adds_the_access_tables(db_url):
    _without_access_tables(db_url)
    store = open_store(db_url)
    try:
        assert access_store(store).has_access_tables()
    finally:
        store.close()


def test_grant_adds_the_access_tables_to_a_store_made_before_them(timeline, sqlite_url):
    _without_access_tables(sqlite_url)
    assert timeline("list", "--json").stdout == ""
    timeline("grant", "audit.zhang", "--role", "compliance", "--json")
    assert [g["name"] for g in map(json.loads, timeline("list", "--json").stdout.splitlines())] == ["audit.zhang"]


def test_grant_on_no_store_creates_none(tmp_path):
    done = _main(f"sqlite:///{tmp_path / 'absent.db'}", "grant", "x", "--role", "ops")
    assert done.returncode == 2 and done.stderr.startswith("timeline: error: no timeline store at")
    assert not (tmp_path / "absent.db").exists()
