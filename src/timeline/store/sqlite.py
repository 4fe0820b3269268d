"""The embedded default store: SQLite through the eventsourcing library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from timeline.store.port import AppendBatch
from timeline.store.sql import EVENTS_TABLE, IMMUTABLE_TABLES, SqlEventStore, side_writes, to_stored_events

SIDE_TABLES = [
    "CREATE TABLE IF NOT EXISTS timeline_event_index ("
    " event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,"
    " version INTEGER NOT NULL, hash TEXT NOT NULL, UNIQUE (customer_id, version))",
    "CREATE TABLE IF NOT EXISTS timeline_heads ("
    " customer_id TEXT PRIMARY KEY, version INTEGER NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS timeline_keys ("
    " customer_id TEXT PRIMARY KEY, wrapped_key BLOB)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'timeline: {table} is append-only ({op} refused)'); END"
        for table in IMMUTABLE_TABLES
        for op in ("UPDATE", "DELETE")
    ),
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
        return super()._insert_events(c, stored_events)


class SQLiteEventStore(SqlEventStore):
    mark = "?"
    _position = "rowid"

    def __init__(self, path: str) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self._datastore = SQLiteDatastore(path, lock_timeout=30, originator_id_type="text")
        self._recorder = _Recorder(self._datastore, events_table_name=EVENTS_TABLE)
        self._recorder.create_table()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return c.fetchall()

    def _insert(self, batch: AppendBatch) -> Sequence[int]:
        return self._recorder.insert_events(to_stored_events(batch), batch=batch) or []

    def close(self) -> None:
        self._datastore.close()
