"""Nothing created by accident: reading commands never make a store, and only ``init`` adds one beside other tables.

Real subprocesses in a fresh working directory, with no ``TIMELINE_DB`` or
``TIMELINE_KEK`` unless a test sets one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KEK
from tests.factories import registered
from tests.test_keys import jsonl, one_error_line, timeline
from timeline.crypto import _b64e

READERS = [
    ["state", "C1"],
    ["explain", "C1"],
    ["history", "C1"],
    ["verify"],
    ["followups"],
    ["state", "--all", "--json"],
]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_verify_of_a_mistyped_sqlite_path_is_no_store_and_creates_no_file(tmp_path):
    message = one_error_line(timeline("verify", "--db", "sqlite:///typo.db", cwd=tmp_path))
    assert message.startswith("no timeline store at sqlite:///typo.db")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reading_command_in_a_fresh_folder_creates_nothing(tmp_path, command):
    message = one_error_line(timeline(*command, cwd=tmp_path))
    assert message.startswith("no timeline store at sqlite:///timeline.db"), message
    assert _files(tmp_path) == []


def test_reading_commands_add_no_table_to_an_existing_database(tmp_path, pg_url):
    sqlite_path = tmp_path / "other.db"
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute("CREATE TABLE ledger (id INTEGER)")
    for url in (f"sqlite:///{sqlite_path}", pg_url):
        for command in READERS:
            assert one_error_line(timeline(*command, "--db", url, cwd=tmp_path)).startswith("no timeline store at")
    with sqlite3.connect(sqlite_path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["ledger"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


def test_a_postgres_database_that_does_not_exist_is_no_store(tmp_path, pg_url):
    missing = pg_url.rsplit("/", 1)[0] + "/timeline_no_such_database"
    message = one_error_line(timeline("verify", "--db", missing, cwd=tmp_path))
    assert message.startswith("no timeline store at postgresql://postgres@127.0.0.1:5432/timeline_no_such_database")


def test_the_password_is_never_shown(tmp_path, pg_url):
    with_password = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    message = one_error_line(timeline("verify", "--db", with_password, cwd=tmp_path))
    assert message.startswith("no timeline store at postgresql://postgres@") and "s3cret" not in message


# --- init -----------------------------------------------------------------------------------------------


def test_init_creates_a_store_that_readers_then_find(db_url, tmp_path):
    made = timeline("init", "--db", db_url, cwd=tmp_path, TIMELINE_KEK=_b64e(KEK))
    assert made.returncode == 0, made.stderr
    assert "timeline store ready at" in made.stdout
    verified = timeline("verify", "--db", db_url, cwd=tmp_path)
    assert verified.returncode == 0 and "verified 0 customers" in verified.stdout
    assert timeline("init", "--db", db_url, cwd=tmp_path, TIMELINE_KEK=_b64e(KEK)).returncode == 0, "idempotent"


def test_init_of_an_existing_store_with_another_kek_is_refused(db_url, tmp_path):
    assert timeline("init", "--db", db_url, cwd=tmp_path, TIMELINE_KEK=_b64e(KEK)).returncode == 0
    refused = timeline("init", "--db", db_url, cwd=tmp_path, TIMELINE_KEK=_b64e(bytes(32)))
    assert one_error_line(refused) == "TIMELINE_KEK does not match the key-encryption key this store was created with"


def test_init_of_an_embedded_store_makes_its_key_file_beside_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'branch.db'}"
    assert timeline("init", "--db", url, cwd=tmp_path).returncode == 0
    assert _files(tmp_path) == ["branch.db", "branch.db.kek"]


@pytest.mark.parametrize("command", [["init"], ["ingest", "-"]], ids=" ".join)
def test_no_store_is_added_to_a_database_holding_other_tables_unless_told(tmp_path, pg_url, command):
    sqlite_path = tmp_path / "other.db"
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute("CREATE TABLE ledger (id INTEGER)")
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE ledger (id integer)")
    for url in (f"sqlite:///{sqlite_path}", pg_url):
        refused = timeline(*command, "--db", url, cwd=tmp_path, stdin=jsonl(registered()), TIMELINE_KEK=_b64e(KEK))
        message = one_error_line(refused)
        assert "holds other tables (ledger) and no timeline store" in message
        assert "timeline init --db URL --alongside-other-tables" in message
    with sqlite3.connect(sqlite_path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["ledger"]
    with psycopg.connect(pg_url) as conn:
        assert [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")] == ["ledger"]


def test_init_alongside_other_tables_when_told_then_ingest_uses_that_store(pg_url, tmp_path):
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE ledger (id integer)")
    env = {"TIMELINE_KEK": _b64e(KEK)}
    made = timeline("init", "--db", pg_url, "--alongside-other-tables", cwd=tmp_path, **env)
    assert made.returncode == 0, made.stderr
    ingested = timeline("ingest", "-", "--db", pg_url, cwd=tmp_path, stdin=jsonl(registered()), **env)
    assert ingested.returncode == 0, ingested.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 0


# --- demo -----------------------------------------------------------------------------------------------

DEMO = ["demo", "--customers", "10", "--years", "0.5"]


def test_the_default_demo_store_is_made_again_run_after_run(tmp_path):
    for _ in range(2):
        run = timeline(*DEMO, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    assert {"timeline-demo.db", "timeline-demo.db.kek"} <= set(_files(tmp_path))
    assert [name for name in _files(tmp_path) if name.endswith(".kek")] == ["timeline-demo.db.kek"]


def test_demo_refuses_to_replace_a_real_store_and_leaves_it_intact(tmp_path):
    url = "sqlite:///precious.db"
    assert timeline("ingest", "-", "--db", url, cwd=tmp_path, stdin=jsonl(registered())).returncode == 0
    before = (tmp_path / "precious.db").read_bytes()
    message = one_error_line(timeline(*DEMO, "--db", url, cwd=tmp_path))
    assert message.startswith("precious.db exists and is not a store made by `timeline demo`: refusing to replace it")
    assert (tmp_path / "precious.db").read_bytes() == before
    assert timeline("history", "C1", "--db", url, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("content", [b"my thesis, not a database\n", b""], ids=["text-file", "empty-file"])
def test_demo_refuses_to_replace_a_file_that_is_no_demo_store(tmp_path, content):
    (tmp_path / "notes.db").write_bytes(content)
    message = one_error_line(timeline(*DEMO, "--db", "sqlite:///notes.db", cwd=tmp_path))
    assert "is not a store made by `timeline demo`" in message
    assert (tmp_path / "notes.db").read_bytes() == content
