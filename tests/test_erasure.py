"""POLICY §7: PII is encrypted at rest with a key per customer; erasure destroys the key.

"At rest" is checked the hard way: every cell of every table in the database
(and on SQLite the database files themselves) is read as bytes and searched
for each personal value, as UTF-8 and as JSON-escaped ASCII.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEK
from tests.factories import correction, deposit, erased, event, registered, visit, withdrawal
from tests.support.backends import every_backend
from tests.test_immutability import Raw
from timeline.application.keyring import load_history
from timeline.application.verify import verify
from timeline.crypto import _b64e
from timeline.engine import Engine

pytestmark = every_backend  # the ingest rules, on every store

TIMELINE = str(Path(sys.executable).with_name("timeline"))
ERASED = {"$erased": True}

PEOPLE = {
    "C1": {"name": "欧阳娜娜", "birth_date": "1961-07-19", "phone": "+86 139 1234 5678"},
    "C2": {"name": "Zhang Weiqiang", "birth_date": "1974-03-08", "phone": "021-6543-2109"},
}
NEW_PHONE = "+86 186 5555 0147"


def ingest(engine: Engine, clock, *events: dict[str, Any]) -> list[Any]:
    return list(engine.ingestor(clock=clock).ingest(list(enumerate(events, 1))))


def statuses(outcomes) -> list[str]:
    return [o.status for o in outcomes]


def profile_update(customer_id: str, **data: Any) -> dict[str, Any]:
    return event("customer.profile_updated", customer_id, "2025-03-01T09:00:00+08:00", data)


def needles() -> dict[str, list[bytes]]:
    """Every personal value, in every form it could be written: UTF-8, JSON-escaped, bare digits."""
    found: dict[str, list[bytes]] = {}
    for person in [*PEOPLE.values(), {"phone": NEW_PHONE}]:
        for value in person.values():
            forms = {value.encode(), json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()}
            if any(ch.isdigit() for ch in value):
                forms.add("".join(ch for ch in value if ch.isdigit()).encode())
            found[value] = sorted(forms)
    return found


def every_cell(raw: Raw) -> dict[str, list[bytes]]:
    """Each table of the database, every cell as bytes."""
    if raw.postgres:
        tables = [
            r[0]
            for r in raw.rows(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        ]
    else:
        tables = [r[0] for r in raw.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert {"timeline_events", "timeline_event_index", "timeline_heads", "timeline_keys"} <= {
        t.split(".")[-1] for t in tables
    }
    cells: dict[str, list[bytes]] = {}
    for table in tables:
        cells[table.split(".")[-1]] = [
            _bytes(v) for row in raw.rows(f"SELECT * FROM {table}") for v in row if v is not None
        ]
    return cells


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def assert_no_plaintext_pii(raw: Raw, db_url: str) -> None:
    leaks = [
        (table, value)
        for table, cells in every_cell(raw).items()
        for value, forms in needles().items()
        if any(form in cell for cell in cells for form in forms)
    ]
    if not raw.postgres:  # the files themselves, pages, WAL and all
        path = Path(db_url[len("sqlite:///") :])
        for file in path.parent.glob(path.name + "*"):
            blob = file.read_bytes()
            leaks += [(file.name, v) for v, forms in needles().items() if any(f in blob for f in forms)]
    assert leaks == []


@pytest.fixture
def raw(db_url):
    conn = Raw(db_url)
    yield conn
    conn.close()


@pytest.fixture
def people(engine, clock) -> dict[str, dict[str, Any]]:
    """C1 and C2 registered with their PII, C1's phone since changed; C1 has an account at zero."""
    regs = {c: registered(c, **p) for c, p in PEOPLE.items()}
    events = [
        regs["C1"],
        regs["C2"],
        deposit("C1", amount="800.00"),
        deposit("C2", amount="300.00"),
        profile_update("C1", phone=NEW_PHONE, occupation="teacher"),
        withdrawal("C1", amount="800.00"),
        visit("C1"),
    ]
    assert statuses(ingest(engine, clock, *events)) == ["accepted"] * len(events)
    return {"registrations": regs, "events": events}


def test_no_personal_value_is_stored_in_plaintext_anywhere(engine, raw, db_url, people):
    # the needles are really there to be found: the same search finds a plaintext copy
    assert any(b"teacher" in cell for cell in every_cell(raw)["timeline_events"])
    assert_no_plaintext_pii(raw, db_url)
    history = load_history(engine.store, engine.keyring(), "C1")
    assert {k: history[0].data[k] for k in ("name", "birth_date", "phone")} == PEOPLE["C1"]
    assert history[2].data == {"phone": NEW_PHONE, "occupation": "teacher"}


def test_pii_is_sealed_in_the_stored_bytes_and_the_rest_is_plain(raw, people):
    state = raw.rows("SELECT state FROM timeline_events WHERE originator_id = 'C1' AND originator_version = 1")[0][0]
    data = json.loads(bytes(state))["data"]
    assert {k: set(v) for k, v in data.items() if k in ("name", "birth_date", "phone")} == {
        "name": {"$enc"},
        "birth_date": {"$enc"},
        "phone": {"$enc"},
    }
    assert (data["branch_id"], data["relationship_manager"], data["segment"]) == ("BR001", "RM001", "individual")


def test_without_the_kek_pii_cannot_be_read(engine, people):
    from timeline.crypto import KeyWrapper
    from timeline.domain.errors import ConfigurationError

    wrong = Engine(engine.store, KeyWrapper(bytes(32)))
    with pytest.raises(ConfigurationError, match="TIMELINE_KEK does not match the key-encryption key"):
        load_history(wrong.store, wrong.keyring(), "C1")


def test_erasure_destroys_the_key_and_pii_reads_as_erased(engine, clock, raw, db_url, people):
    before = {r.version: r.state for r in engine.store.read_stream("C1")}
    [outcome] = ingest(engine, clock, erased("C1"))
    assert outcome.status == "accepted"

    assert engine.store.wrapped_keys(["C1", "C2"])["C1"] is None
    assert engine.store.wrapped_keys(["C2"])["C2"] is not None
    [(wrapped,)] = raw.rows("SELECT wrapped_key FROM timeline_keys WHERE customer_id = 'C1'")
    assert wrapped is None

    after = {r.version: r.state for r in engine.store.read_stream("C1")}
    assert {v: s for v, s in after.items() if v in before} == before, "stored bytes are never rewritten"

    history = load_history(engine.store, engine.keyring(), "C1")
    reg, dep, update, wd = history[0], history[1], history[2], history[3]
    assert [e.type for e in history] == [
        "customer.registered",
        "deposit.made",
        "customer.profile_updated",
        "withdrawal.made",
        "visit.recorded",
        "customer.erased",
    ]
    assert {k: reg.data[k] for k in ("name", "birth_date", "phone")} == {
        "name": ERASED,
        "birth_date": ERASED,
        "phone": ERASED,
    }
    assert (reg.data["branch_id"], reg.data["segment"]) == ("BR001", "individual")
    assert dep.data == {"account_id": "A1", "amount": "800.00", "product": "demand"}
    assert wd.data == {"account_id": "A1", "amount": "800.00"}
    assert update.data == {"phone": ERASED, "occupation": "teacher"}
    assert history[-1].data == {"reason": "customer request"}

    other = load_history(engine.store, engine.keyring(), "C2")
    assert {k: other[0].data[k] for k in ("name", "birth_date", "phone")} == PEOPLE["C2"]

    report = verify(engine.store)
    assert report.intact and report.events == 8
    assert_no_plaintext_pii(raw, db_url)


def test_a_fresh_process_sees_the_erasure_too(engine, clock, db_url, people):
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    ingest(engine, clock, erased("C1"))
    store = open_store(db_url)
    try:
        again = Engine(store, KeyWrapper(KEK))
        assert load_history(store, again.keyring(), "C1")[0].data["name"] == ERASED
    finally:
        store.close()


def test_history_command_shows_erased_pii_and_intact_financial_facts(engine, clock, db_url, tmp_path, people):
    ingest(engine, clock, erased("C1"))
    env = {**os.environ, "TIMELINE_DB": db_url, "TIMELINE_KEK": _b64e(KEK)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([TIMELINE, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    result = run("history", "C1", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["type"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["customer.registered"]["data"]["name"] == ERASED
    assert rows["customer.registered"]["data"]["birth_date"] == ERASED
    assert rows["customer.profile_updated"]["data"] == {"phone": ERASED, "occupation": "teacher"}
    assert rows["deposit.made"]["data"]["amount"] == "800.00"
    assert PEOPLE["C1"]["name"] not in result.stdout

    table = run("history", "C1")
    assert table.returncode == 0, table.stderr
    assert "‹erased›" in table.stdout and PEOPLE["C1"]["name"] not in table.stdout

    other = run("history", "C2", "--json")
    assert json.loads(other.stdout.splitlines()[0])["data"]["name"] == PEOPLE["C2"]["name"]

    verified = run("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["intact"] is True


@pytest.mark.parametrize(
    "late",
    [
        visit("C1", at="2025-07-01T09:00:00+08:00"),
        deposit("C1", at="2025-07-01T09:00:00+08:00"),
        profile_update("C1", phone="+86 100 0000 0000"),
        erased("C1", at="2025-07-01T09:00:00+08:00"),
        registered("C1", at="2025-07-01T09:00:00+08:00"),
    ],
    ids=lambda e: e["type"],
)
def test_events_after_erasure_are_rejected_except_corrections(engine, clock, people, late):
    ingest(engine, clock, erased("C1"))
    head = engine.store.head_position()
    [outcome] = ingest(engine, clock, copy.deepcopy(late))
    assert outcome.status == "rejected"
    assert "erased" in outcome.error or "already registered" in outcome.error
    assert engine.store.head_position() == head


def test_a_correction_is_still_accepted_after_erasure(engine, clock, people):
    ingest(engine, clock, erased("C1"))
    target = people["events"][6]["event_id"]  # the visit
    [outcome] = ingest(engine, clock, correction(target, "C1", at="2025-07-01T09:00:00+08:00"))
    assert outcome.status == "accepted", outcome.error
    assert verify(engine.store, "C1").intact


def test_other_customers_are_unaffected_by_an_erasure(engine, clock, people):
    ingest(engine, clock, erased("C1"))
    assert statuses(ingest(engine, clock, visit("C2"), profile_update("C2", phone="+86 177 0000 1111"))) == [
        "accepted",
        "accepted",
    ]
    history = load_history(engine.store, engine.keyring(), "C2")
    assert history[-1].data == {"phone": "+86 177 0000 1111"}


def resend(engine: Engine, clock, *events: dict[str, Any]) -> list[Any]:
    """One event at a time through the path that always consults the event-id index."""
    ingestor = engine.ingestor(clock=clock)
    return [ingestor.ingest_one(copy.deepcopy(e)) for e in events]


def test_duplicates_after_erasure_are_compared_without_pii(engine, clock, people):
    ingest(engine, clock, erased("C1"))
    head = engine.store.head_position()
    reg = people["registrations"]["C1"]
    other_pii = copy.deepcopy(reg)
    other_pii["data"].update(name="Somebody Else", birth_date="2000-01-01", phone="+86 100 0000 0000")
    update = copy.deepcopy(people["events"][4])
    update["data"]["phone"] = "+86 100 0000 0001"
    outcomes = resend(engine, clock, reg, other_pii, update, people["events"][2])
    assert statuses(outcomes) == ["duplicate"] * 4, [o.error for o in outcomes]

    not_pii = copy.deepcopy(reg)
    not_pii["data"]["branch_id"] = "BR999"
    update_other = copy.deepcopy(people["events"][4])
    update_other["data"]["occupation"] = "pilot"
    outcomes = resend(engine, clock, not_pii, update_other)
    assert statuses(outcomes) == ["rejected", "rejected"]
    assert all("already used for different content" in o.error for o in outcomes), [o.error for o in outcomes]
    assert engine.store.head_position() == head


def test_before_erasure_a_duplicate_with_different_pii_is_rejected(engine, clock, people):
    other_pii = copy.deepcopy(people["registrations"]["C1"])
    other_pii["data"]["name"] = "Somebody Else"
    [outcome] = resend(engine, clock, other_pii)
    assert outcome.status == "rejected"
    assert "already used for different content" in outcome.error


def test_bulk_re_sending_of_stored_events_after_erasure_reports_duplicates(engine, clock, people):
    ingest(engine, clock, erased("C1"))
    other_pii = copy.deepcopy(people["registrations"]["C1"])
    other_pii["data"]["name"] = "Somebody Else"
    outcomes = ingest(
        engine, clock, copy.deepcopy(people["registrations"]["C1"]), other_pii, copy.deepcopy(people["events"][2])
    )
    assert statuses(outcomes) == ["duplicate"] * 3, [o.error for o in outcomes]


def test_bulk_re_sending_a_registration_reports_a_duplicate(engine, clock, people):
    [outcome] = ingest(engine, clock, copy.deepcopy(people["registrations"]["C2"]))
    assert outcome.status == "duplicate", outcome.error


def test_sqlite_leaves_no_copy_of_the_destroyed_key_in_its_files(engine, clock, people):
    """DESIGN: secure_delete is on for the erasure; after a checkpoint no file holds the old wrapped key."""
    if not engine.store.url.startswith("sqlite"):
        pytest.skip("SQLite only: PostgreSQL keeps the dead tuple until VACUUM (DESIGN.md)")
    import sqlite3

    path = Path(engine.store.url[len("sqlite:///") :])
    wrapped = engine.store.wrapped_keys(["C1"])["C1"]
    assert wrapped

    def checkpoint() -> None:
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0, "checkpoint was blocked"
        finally:
            conn.close()

    checkpoint()
    assert wrapped in path.read_bytes(), "the key is in the main file before erasure"
    ingest(engine, clock, erased("C1"))
    checkpoint()
    leftovers = [f.name for f in path.parent.glob(path.name + "*") if wrapped in f.read_bytes()]
    assert leftovers == []


def test_postgres_leaves_no_copy_of_the_destroyed_key_after_vacuum(engine, clock, raw, people):
    """DESIGN: the dead key tuple stays until VACUUM; after it, the table's file no longer holds the old key."""
    if not raw.postgres:
        pytest.skip("PostgreSQL only")
    wrapped = engine.store.wrapped_keys(["C1"])["C1"]
    [(data_dir,)] = raw.rows("SHOW data_directory")
    [(relpath,)] = raw.rows("SELECT pg_relation_filepath('timeline_keys')")
    path = Path(data_dir) / relpath
    raw.execute("CHECKPOINT")
    try:
        assert wrapped in path.read_bytes()
    except OSError:
        pytest.skip(f"the server's files are not readable here ({path})")
    ingest(engine, clock, erased("C1"))
    raw.execute("VACUUM timeline_keys")
    raw.execute("CHECKPOINT")
    assert wrapped not in path.read_bytes()
