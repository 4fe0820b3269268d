"""The production store: PostgreSQL through the eventsourcing library and psycopg 3.

The library's recorder takes ``LOCK TABLE … IN EXCLUSIVE MODE`` for each
write, so notification ids (our positions) are issued in commit order and a
reader tailing the log never passes over a row that commits later. Gaps from
rolled-back transactions remain possible and are harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL

from timeline.errors import StoreUnavailable
from timeline.store.port import AppendBatch
from timeline.store.sql import EVENTS_TABLE, IMMUTABLE_TABLES, SqlEventStore, side_writes, to_stored_events

START_HINT = (
    "start one with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or `docker compose up -d postgres`), or point TIMELINE_DB / TIMELINE_TEST_PG at a running server"
)

SIDE_TABLES = [
    "CREATE TABLE IF NOT EXISTS timeline_event_index ("
    " event_id uuid PRIMARY KEY, customer_id text NOT NULL,"
    " version bigint NOT NULL, hash text NOT NULL, UNIQUE (customer_id, version))",
    "CREATE TABLE IF NOT EXISTS timeline_heads ("
    " customer_id text PRIMARY KEY, version bigint NOT NULL, hash text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS timeline_keys (customer_id text PRIMARY KEY, wrapped_key bytea)",
    "CREATE OR REPLACE FUNCTION timeline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'timeline: % is append-only (% refused)', TG_TABLE_NAME, TG_OP "
    "USING ERRCODE = 'insufficient_privilege'; END $$",
    *(
        stmt
        for table in IMMUTABLE_TABLES
        for stmt in (
            f"CREATE OR REPLACE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION timeline_refuse_change()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION timeline_refuse_change()",
        )
    ),
]


class _Recorder(PostgresApplicationRecorder):
    """The library's recorder, writing our side tables in the same transaction."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE)
        self.sql_create_statements.extend(SQL(s) for s in SIDE_TABLES)  # type: ignore[arg-type]

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        side_writes(curs, kwargs["batch"], "%s")


class PostgresEventStore(SqlEventStore):
    mark = "%s"
    _position = "notification_id"

    def __init__(self, url: str, pool_size: int = 2) -> None:
        self.url = url
        params = psycopg.conninfo.conninfo_to_dict(url)
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"cannot reach PostgreSQL at {_safe(url)}: {first}; {START_HINT}") from None
        self._datastore = PostgresDatastore(
            dbname=str(params.get("dbname", "postgres")),
            host=str(params.get("host", "127.0.0.1")),
            port=str(params.get("port", 5432)),
            user=str(params.get("user", "postgres")),
            password=str(params.get("password", "")),
            pool_size=pool_size,
            max_overflow=2,
            originator_id_type="text",
            pool_open_timeout=10,
            connect_timeout=5,
        )
        self._recorder = _Recorder(self._datastore)
        self._recorder.create_table()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._datastore.get_connection() as conn, conn.cursor(row_factory=psycopg.rows.tuple_row) as c:
            c.execute(sql, params)
            return c.fetchall()

    def _insert(self, batch: AppendBatch) -> Sequence[int]:
        return self._recorder.insert_events(to_stored_events(batch), batch=batch) or []

    def close(self) -> None:
        self._datastore.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
