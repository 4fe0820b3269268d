"""POLICY §7 at the edges: keys bound to their store, and a database that destroys a key only by erasure.

The store records a check value of the key-encryption key it was created
with; any other KEK is refused for reads and writes. The data-key table
refuses UPDATE, DELETE, TRUNCATE and a second key for a customer, except the
one change erasure makes: nulling the key of a customer whose stream holds a
stored ``customer.erased``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KEK
from tests.factories import deposit, erased, registered
from tests.test_immutability import REFUSED, Raw
from timeline.crypto import KEK_MISMATCH, KeyWrapper, _b64e, check_value
from timeline.domain.errors import ConfigurationError
from timeline.engine import Engine
from timeline.store import open_store

TIMELINE = str(Path(sys.executable).with_name("timeline"))
OTHER_KEK = bytes(range(1, 33))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIMELINE_KEK", "TIMELINE_KEK_FILE", "TIMELINE_DB")}
    return {**env, **extra}


def timeline(*args: str, cwd: Path, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [TIMELINE, *args], input=stdin, capture_output=True, text=True, env=_env(**env), cwd=cwd, timeout=120
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("timeline: error: "), line
    return line[len("timeline: error: ") :]


def jsonl(*events: dict) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)


@pytest.fixture
def filled(engine, clock, db_url):
    """C1 and C2 registered (two data keys), and a raw connection to the database."""
    outcomes = list(engine.ingestor(clock=clock).ingest(list(enumerate([registered(), registered("C2")], 1))))
    assert [o.status for o in outcomes] == ["accepted"] * 2
    raw = Raw(db_url)
    yield raw
    raw.close()


def _keys(raw: Raw) -> list[tuple]:
    return sorted(raw.rows("SELECT customer_id, wrapped_key FROM timeline_keys"))


# --- the key-encryption key is the store's --------------------------------------------------------------


def test_ingest_from_another_directory_without_a_kek_reuses_the_key_file_beside_the_database(tmp_path):
    db = tmp_path / "store" / "timeline.db"
    db.parent.mkdir()
    first, second = tmp_path / "ops-a", tmp_path / "ops-b"
    first.mkdir(), second.mkdir()
    url = f"sqlite:///{db}"
    assert timeline("ingest", "-", "--db", url, cwd=first, stdin=jsonl(registered("C1"))).returncode == 0
    assert timeline("ingest", "-", "--db", url, cwd=second, stdin=jsonl(registered("C2", name="李四"))).returncode == 0

    assert sorted(p.name for p in tmp_path.rglob("*.kek")) == ["timeline.db.kek"]
    assert (db.parent / "timeline.db.kek").exists()
    for customer, name in (("C1", "王小明"), ("C2", "李四")):
        shown = timeline("history", customer, "--json", "--db", url, cwd=first)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout.splitlines()[0])["data"]["name"] == name


def test_writers_starting_a_new_store_at_once_without_a_kek_share_one_key_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'timeline.db'}"
    names = {f"C{i}": f"客户{i}" for i in range(1, 5)}
    started = []
    for customer, name in names.items():
        (tmp_path / customer).mkdir()
        started.append(
            subprocess.Popen(
                [TIMELINE, "ingest", "-", "--db", url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=tmp_path / customer,
                env=_env(),
            )
        )
        started[-1].stdin.write(jsonl(registered(customer, name=name)).encode())  # type: ignore[union-attr]
        started[-1].stdin.close()  # type: ignore[union-attr]
    for process in started:
        assert process.wait(timeout=120) == 0, process.stderr.read()  # type: ignore[union-attr]
    assert [p.name for p in tmp_path.rglob("*.kek")] == ["timeline.db.kek"]
    for customer, name in names.items():
        shown = timeline("history", customer, "--json", "--db", url, cwd=tmp_path)
        assert json.loads(shown.stdout.splitlines()[0])["data"]["name"] == name


def test_a_store_whose_key_file_is_missing_is_refused_and_no_new_key_is_made(tmp_path):
    db = tmp_path / "timeline.db"
    url = f"sqlite:///{db}"
    assert timeline("ingest", "-", "--db", url, cwd=tmp_path, stdin=jsonl(registered("C1"))).returncode == 0
    (tmp_path / "timeline.db.kek").rename(tmp_path / "elsewhere.kek")

    message = one_error_line(timeline("ingest", "-", "--db", url, cwd=tmp_path, stdin=jsonl(registered("C2"))))
    assert message.startswith(f"no key-encryption key for the store at {url}: its key file {db}.kek is missing")
    assert not (tmp_path / "timeline.db.kek").exists()
    with_file = timeline("history", "C1", "--db", url, cwd=tmp_path, TIMELINE_KEK_FILE=str(tmp_path / "elsewhere.kek"))
    assert with_file.returncode == 0, with_file.stderr


def test_a_wrong_kek_is_refused_for_a_new_and_an_existing_customer_and_nothing_is_stored(db_url, tmp_path):
    right, wrong = _b64e(KEK), _b64e(OTHER_KEK)
    assert (
        timeline("ingest", "-", "--db", db_url, cwd=tmp_path, stdin=jsonl(registered()), TIMELINE_KEK=right).returncode
        == 0
    )
    for event in (registered("C2"), deposit("C1")):
        refused = timeline("ingest", "-", "--db", db_url, cwd=tmp_path, stdin=jsonl(event), TIMELINE_KEK=wrong)
        assert one_error_line(refused) == KEK_MISMATCH
    assert one_error_line(timeline("history", "C1", "--db", db_url, cwd=tmp_path, TIMELINE_KEK=wrong)) == KEK_MISMATCH

    store = open_store(db_url)
    try:
        assert store.customer_ids() == ["C1"]
        assert [r.version for r in store.read_stream("C1")] == [1]
        assert list(store.wrapped_keys(["C1", "C2"])) == ["C1"]
        assert store.metadata("kek_check") == check_value(KEK)
    finally:
        store.close()


def test_the_python_api_refuses_a_wrong_kek_too(engine, clock):
    assert [o.status for o in engine.ingestor(clock=clock).ingest([(1, registered())])] == ["accepted"]
    wrong = Engine(engine.store, KeyWrapper(OTHER_KEK))
    with pytest.raises(ConfigurationError, match=KEK_MISMATCH):
        list(wrong.ingestor(clock=clock).ingest([(1, registered("C2"))]))
    assert engine.store.customer_ids() == ["C1"]


def test_a_store_made_before_check_values_records_one_once_the_kek_unwraps_a_stored_key(filled, engine, clock, db_url):
    filled.execute("DROP TABLE timeline_meta")  # as a store made before the table existed
    store = open_store(db_url)  # a writer's open adds the table back, empty
    try:
        assert store.metadata("kek_check") is None
        with pytest.raises(ConfigurationError, match=KEK_MISMATCH):
            list(Engine(store, KeyWrapper(OTHER_KEK)).ingestor(clock=clock).ingest([(1, registered("C3"))]))
        assert store.metadata("kek_check") is None, "a KEK that unwraps no stored key is never recorded"
        outcomes = list(Engine(store, KeyWrapper(KEK)).ingestor(clock=clock).ingest([(1, registered("C3"))]))
        assert [o.status for o in outcomes] == ["accepted"]
        assert store.metadata("kek_check") == check_value(KEK)
    finally:
        store.close()


# --- the database destroys a key only by erasure --------------------------------------------------------

KEY_STATEMENTS = {
    "null-a-key": "UPDATE timeline_keys SET wrapped_key = NULL WHERE customer_id = 'C1'",
    "replace-a-key": "UPDATE timeline_keys SET wrapped_key = wrapped_key || wrapped_key WHERE customer_id = 'C1'",
    "move-a-key": "UPDATE timeline_keys SET customer_id = 'C9' WHERE customer_id = 'C1'",
    "delete-a-key": "DELETE FROM timeline_keys WHERE customer_id = 'C1'",
    "delete-every-key": "DELETE FROM timeline_keys",
}
SECOND_KEY = {
    "sqlite": "INSERT OR REPLACE INTO timeline_keys (customer_id, wrapped_key) VALUES ('C1', x'00')",
    "postgres": "INSERT INTO timeline_keys (customer_id, wrapped_key) VALUES ('C1', '\\x00') "
    "ON CONFLICT (customer_id) DO UPDATE SET wrapped_key = excluded.wrapped_key",
}


@pytest.mark.parametrize("statement", KEY_STATEMENTS.values(), ids=KEY_STATEMENTS.keys())
def test_update_and_delete_of_a_data_key_are_refused(filled, statement):
    before = _keys(filled)
    with pytest.raises(REFUSED, match="a data key is destroyed only by an erasure"):
        filled.execute(statement)
    assert _keys(filled) == before


def test_a_second_key_for_a_customer_is_refused(filled):
    before = _keys(filled)
    with pytest.raises(REFUSED + (psycopg.errors.UniqueViolation,)):
        filled.execute(SECOND_KEY["postgres" if filled.postgres else "sqlite"])
    assert _keys(filled) == before


def test_truncating_the_keys_is_refused_on_postgres(filled):
    if not filled.postgres:
        pytest.skip("PostgreSQL only: SQLite has no TRUNCATE (DELETE is tested above)")
    before = _keys(filled)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        filled.execute("TRUNCATE timeline_keys")
    assert _keys(filled) == before


def test_an_ordinary_role_with_table_privileges_cannot_destroy_a_key(pg_url, clock):
    store = open_store(pg_url)
    try:
        ingestor = Engine(store, KeyWrapper(KEK)).ingestor(clock=clock)
        outcomes = list(ingestor.ingest([(1, registered()), (2, registered("C2"))]))
        assert [o.status for o in outcomes] == ["accepted"] * 2
    finally:
        store.close()
    role = f"tl_clerk_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(pg_url, autocommit=True)
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO "{role}"')
        info = psycopg.conninfo.conninfo_to_dict(pg_url)
        with psycopg.connect(psycopg.conninfo.make_conninfo(**{**info, "user": role}), autocommit=True) as clerk:
            assert not clerk.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
            for statement in (*KEY_STATEMENTS.values(), "TRUNCATE timeline_keys"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused"):
                    clerk.execute(statement)
        rows = admin.execute("SELECT customer_id, wrapped_key IS NOT NULL FROM timeline_keys ORDER BY 1").fetchall()
        assert rows == [("C1", True), ("C2", True)]
    finally:
        admin.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
        admin.execute(f'DROP ROLE "{role}"')
        admin.close()


def test_erasure_nulls_the_key_in_the_transaction_that_stores_it(engine, clock, filled):
    [outcome] = list(engine.ingestor(clock=clock).ingest([(1, erased("C1"))]))
    assert outcome.status == "accepted"
    assert dict(_keys(filled))["C1"] is None
    with pytest.raises(REFUSED, match="a data key is destroyed only by an erasure"):
        filled.execute("UPDATE timeline_keys SET wrapped_key = NULL WHERE customer_id = 'C2'")


def test_the_store_metadata_is_immutable(filled):
    before = filled.rows("SELECT name, value FROM timeline_meta")
    assert before, "the check value is recorded with the first key"
    for statement in ("UPDATE timeline_meta SET value = 'forged'", "DELETE FROM timeline_meta"):
        with pytest.raises(REFUSED, match="append-only"):
            filled.execute(statement)
    assert filled.rows("SELECT name, value FROM timeline_meta") == before
