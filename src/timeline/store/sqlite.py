"""The embedded default store: SQLite through the eventsourcing library."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.persistence import PersistenceError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from timeline.application.ports import AppendBatch
from timeline.domain.errors import NoStore, StoreUnavailable
from timeline.store.access_sql import SQLITE_TABLES as ACCESS_TABLES
from timeline.store.sql import (
    EVENTS_TABLE,
    IMMUTABLE_TABLES,
    KEY_GUARD,
    KEY_REFUSED,
    META_TABLE,
    SqlEventStore,
    check_reads,
    destroy_keys,
    other_tables_refused,
    side_writes,
    to_stored_events,
)

LOCK_TIMEOUT = 30
SIDE_TABLES = [
    "CREATE TABLE IF NOT EXISTS timeline_event_index ("
    " event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,"
    " version INTEGER NOT NULL, hash TEXT NOT NULL, UNIQUE (customer_id, version))",
    "CREATE TABLE IF NOT EXISTS timeline_heads ("
    " customer_id TEXT PRIMARY KEY, version INTEGER NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS timeline_keys ( customer_id TEXT PRIMARY KEY, wrapped_key BLOB)",
    "CREATE TABLE IF NOT EXISTS timeline_referrals ( event_id TEXT PRIMARY KEY, referred_customer_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS timeline_referrals_referred ON timeline_referrals (referred_customer_id)",
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} ( name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS timeline_keys_no_delete BEFORE DELETE ON timeline_keys "
    f"BEGIN SELECT RAISE(ABORT, '{KEY_REFUSED} (DELETE refused)'); END",
    f"CREATE TRIGGER IF NOT EXISTS timeline_keys_only_erasure BEFORE UPDATE ON timeline_keys WHEN NOT ({KEY_GUARD}) "
    f"BEGIN SELECT RAISE(ABORT, '{KEY_REFUSED} (UPDATE refused)'); END",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'timeline: {table} is append-only ({op} refused)'); END"
        for table in IMMUTABLE_TABLES
        for op in ("UPDATE", "DELETE")
    ),
    # INSERT OR REPLACE (and REPLACE) deletes a colliding row without firing DELETE triggers
    # (unless the connection enables recursive_triggers): refuse any insert over an existing row.
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table} WHEN {taken} "
        f"BEGIN SELECT RAISE(ABORT, 'timeline: {table} is append-only (INSERT over an existing row refused)'); END"
        for table, taken in (
            (
                EVENTS_TABLE,
                f"EXISTS (SELECT 1 FROM {EVENTS_TABLE} "
                "WHERE originator_id = NEW.originator_id AND originator_version = NEW.originator_version)",
            ),
            (
                "timeline_event_index",
                "EXISTS (SELECT 1 FROM timeline_event_index WHERE event_id = NEW.event_id) "
                "OR EXISTS (SELECT 1 FROM timeline_event_index "
                "WHERE customer_id = NEW.customer_id AND version = NEW.version)",
            ),
            ("timeline_keys", "EXISTS (SELECT 1 FROM timeline_keys WHERE customer_id = NEW.customer_id)"),
            (META_TABLE, f"EXISTS (SELECT 1 FROM {META_TABLE} WHERE name = NEW.name)"),
        )
    ),
    *ACCESS_TABLES,
]


class _Recorder(SQLiteApplicationRecorder):
    """The library's recorder, writing our side tables in the same transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + SIDE_TABLES

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        batch: AppendBatch = kwargs["batch"]
        if batch.destroy_keys:
            c.execute("PRAGMA secure_delete = ON")
        side_writes(c, batch, "?")
        positions = super()._insert_events(c, stored_events)
        destroy_keys(c, batch, "?")
        check_reads(c, batch, "?", own_written=True)  # after a write: the write lock is held, the view is the latest
        return positions


class SQLiteEventStore(SqlEventStore):
    mark = "?"
    _position = "rowid"

    def __init__(self, path: str, create: bool = True, alongside_other_tables: bool = True) -> None:
        """``create=False``: open only an existing store, adding nothing (not even the file)."""
        self.url = f"sqlite:///{path}"
        self.path = path
        tables = self._existing_tables()
        if EVENTS_TABLE not in tables:
            if not create:
                raise NoStore(f"no timeline store at {self.url}")
            if not alongside_other_tables:
                other_tables_refused(self.url, tables)
        if create:
            self._create_schema()
        else:
            self._connect()

    def _existing_tables(self) -> set[str]:
        """The tables already in the file (none if there is no file), read without writing to it."""
        if not os.path.exists(self.path):
            return set()
        try:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT)
            try:
                return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None

    def default_key_file(self) -> Path:
        return Path(self.path + ".kek")

    def _has_table(self, name: str) -> bool:
        return bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def _connect(self) -> None:
        self._datastore = SQLiteDatastore(self.path, lock_timeout=LOCK_TIMEOUT, originator_id_type="text")
        self._recorder = _Recorder(self._datastore, events_table_name=EVENTS_TABLE)

    def _create_schema(self) -> None:
        """Create the tables, waiting out other processes doing the same.

        Switching a new file to WAL and upgrading the DDL transaction to a write
        lock both fail at once with "database is locked" when another process is
        there first (SQLite does not call its busy handler for them), so retry —
        each time with a new datastore: when opening the connection fails, the
        library's pool keeps its writer lock taken, and a second try on that
        pool would wait for a writer that never returns.
        """
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            self._connect()
            try:
                self._recorder.create_table()
                return
            except (PersistenceError, sqlite3.Error) as exc:
                self._datastore.close()
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return c.fetchall()

    def _check_reads(self, batch: AppendBatch) -> None:
        with self._datastore.transaction(commit=False) as c:
            check_reads(c, batch, "?", own_written=False)

    def _insert(self, batch: AppendBatch) -> Sequence[int]:
        return self._recorder.insert_events(to_stored_events(batch), batch=batch) or []

    def close(self) -> None:
        self._datastore.close()
