"""POLICY §6: stored events are never updated or deleted, and the database itself refuses it.

Each test fills a real store through the engine, then opens a plain DB-API
connection (``sqlite3`` or ``psycopg``, as the PostgreSQL superuser) and tries
to change ``timeline_events`` or ``timeline_event_index`` behind the engine's
back. The database must refuse every statement, and the rows must be exactly
as they were.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from tests.conftest import KEK
from tests.factories import deposit, registered, visit
from timeline.application.verify import verify
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store
from timeline.store.sql import IMMUTABLE_TABLES

REFUSED = (sqlite3.IntegrityError, psycopg.errors.InsufficientPrivilege)


class Raw:
    """A plain connection to a store's database, outside the engine (autocommit)."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            self.conn: Any = psycopg.connect(url, autocommit=True)
        else:
            self.conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None, timeout=30)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.postgres:
            sql = sql.replace("?", "%s")
        self.conn.execute(sql, params)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            sql = sql.replace("?", "%s")
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in self.conn.execute(sql, params)]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the immutable tables (with SQLite's rowid, the position), in a stable order."""
        rowid = "" if self.postgres else "rowid, "
        return {t: sorted(self.rows(f"SELECT {rowid}* FROM {t}"), key=repr) for t in IMMUTABLE_TABLES}

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def filled(engine, clock, db_url):
    """A store with two customers' events, and a raw connection to its database."""
    events = [registered(), deposit(), visit(), registered("C2"), deposit("C2", amount="5.00")]
    outcomes = list(engine.ingestor(clock=clock).ingest(list(enumerate(events, 1))))
    assert [o.status for o in outcomes] == ["accepted"] * 5
    raw = Raw(db_url)
    yield raw
    raw.close()


def _first_event_id(raw: Raw) -> str:
    return str(raw.rows("SELECT event_id FROM timeline_event_index WHERE customer_id = 'C1' AND version = 1")[0][0])


STATEMENTS = {
    "update-event-state": "UPDATE timeline_events SET state = ? WHERE originator_id = 'C1' AND originator_version = 2",
    "update-event-version": "UPDATE timeline_events SET originator_version = 99 WHERE originator_id = 'C1'",
    "update-event-topic": "UPDATE timeline_events SET topic = 'withdrawal.made'",
    "update-event-no-op": "UPDATE timeline_events SET state = state",
    "delete-one-event": "DELETE FROM timeline_events WHERE originator_id = 'C1' AND originator_version = 3",
    "delete-all-events": "DELETE FROM timeline_events",  # SQLite's only way to truncate
    "update-index-hash": "UPDATE timeline_event_index SET hash = 'forged' WHERE customer_id = 'C1'",
    "update-index-version": "UPDATE timeline_event_index SET version = version + 10",
    "delete-one-index-entry": "DELETE FROM timeline_event_index WHERE customer_id = 'C2'",
    "delete-all-index-entries": "DELETE FROM timeline_event_index",
}


@pytest.mark.parametrize("statement", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_update_and_delete_are_refused_and_change_nothing(filled, statement):
    before = filled.snapshot()
    params = (b'{"forged":true}',) if "?" in statement else ()
    with pytest.raises(REFUSED, match="append-only"):
        filled.execute(statement, params)
    assert filled.snapshot() == before


@pytest.mark.parametrize("table", IMMUTABLE_TABLES)
def test_truncate_is_refused_on_postgres_even_for_a_superuser(pg_url, clock, table):
    store = open_store(pg_url)
    try:
        list(Engine(store, KeyWrapper(KEK)).ingestor(clock=clock).ingest([(1, registered()), (2, deposit())]))
    finally:
        store.close()
    raw = Raw(pg_url)
    try:
        assert raw.rows("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]
        before = raw.snapshot()
        for statement in (f"TRUNCATE {table}", f"TRUNCATE {table} CASCADE", f"TRUNCATE {', '.join(IMMUTABLE_TABLES)}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                raw.execute(statement)
        assert raw.snapshot() == before
    finally:
        raw.close()


def test_overwriting_an_event_by_insert_is_refused(filled):
    """An upsert (PostgreSQL ``ON CONFLICT DO UPDATE``, SQLite ``INSERT OR REPLACE``) is an update too."""
    before = filled.snapshot()
    if filled.postgres:
        overwrite = (
            "INSERT INTO timeline_events (originator_id, originator_version, topic, state) "
            "VALUES ('C1', 1, 'customer.registered', ?) ON CONFLICT (originator_id, originator_version) "
            "DO UPDATE SET state = excluded.state"
        )
    else:
        overwrite = "INSERT OR REPLACE INTO timeline_events VALUES ('C1', 1, 'customer.registered', ?)"
    with pytest.raises(REFUSED, match="append-only"):
        filled.execute(overwrite, (b'{"forged":true}',))
    assert filled.snapshot() == before


def test_overwriting_an_index_entry_by_insert_is_refused(filled):
    before = filled.snapshot()
    event_id = _first_event_id(filled)
    if filled.postgres:
        overwrite = (
            "INSERT INTO timeline_event_index (event_id, customer_id, version, hash) VALUES (?, 'C1', 1, 'forged') "
            "ON CONFLICT (event_id) DO UPDATE SET hash = excluded.hash"
        )
    else:
        overwrite = "REPLACE INTO timeline_event_index (event_id, customer_id, version, hash) VALUES (?, 'C1', 1, 'f')"
    with pytest.raises(REFUSED, match="append-only"):
        filled.execute(overwrite, (event_id,))
    assert filled.snapshot() == before


def test_overwriting_by_the_other_unique_key_of_the_index_is_refused(filled):
    """SQLite's REPLACE deletes a row that collides on *any* unique key: (customer, version) too."""
    before = filled.snapshot()
    if filled.postgres:
        overwrite = (
            "INSERT INTO timeline_event_index VALUES ('00000000-0000-4000-8000-000000000000', 'C1', 2, 'x') "
            "ON CONFLICT (customer_id, version) DO UPDATE SET hash = excluded.hash"
        )
    else:
        overwrite = (
            "INSERT OR REPLACE INTO timeline_event_index VALUES ('00000000-0000-4000-8000-000000000000', 'C1', 2, 'x')"
        )
    with pytest.raises(REFUSED, match="append-only"):
        filled.execute(overwrite)
    assert filled.snapshot() == before


def test_a_refused_statement_inside_a_transaction_rolls_back_its_other_writes(filled):
    before = filled.snapshot()
    with pytest.raises(REFUSED, match="append-only"):
        filled.execute("BEGIN")
        try:
            filled.execute("INSERT INTO timeline_heads (customer_id, version, hash) VALUES ('CX', 1, 'h')")
            filled.execute("DELETE FROM timeline_events WHERE originator_id = 'C2'")
        finally:
            filled.execute("ROLLBACK")
    assert filled.snapshot() == before
    assert filled.rows("SELECT count(*) FROM timeline_heads WHERE customer_id = 'CX'") == [(0,)]


def test_the_store_still_appends_and_verifies_after_refused_attempts(filled, engine, clock):
    for statement in ("DELETE FROM timeline_events", "UPDATE timeline_event_index SET hash = 'x'"):
        with pytest.raises(REFUSED):
            filled.execute(statement)
    [outcome] = engine.ingestor(clock=clock).ingest([(1, visit("C2"))])
    assert outcome.status == "accepted"
    report = verify(engine.store)
    assert report.intact and report.events == 6


def test_reopening_an_existing_store_keeps_its_guards(db_url, filled):
    open_store(db_url).close()  # creates its tables and triggers if missing: must not weaken them
    with pytest.raises(REFUSED, match="append-only"):
        filled.execute("DELETE FROM timeline_events")
