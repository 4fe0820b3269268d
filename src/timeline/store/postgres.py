"""The production store: PostgreSQL through the eventsourcing library and psycopg 3.

The library's recorder takes ``LOCK TABLE … IN EXCLUSIVE MODE`` for each
write, so notification ids (our positions) are issued in commit order and a
reader tailing the log never passes over a row that commits later. Gaps from
rolled-back transactions remain possible and are harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL

from timeline.application.ports import AppendBatch, IndexEntry, NewEvent, StoredRow
from timeline.domain.errors import NoStore, StoreUnavailable
from timeline.store.access_sql import POSTGRES_OBJECTS, POSTGRES_TABLES, POSTGRES_TRIGGERS
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
    state_bytes,
)

START_HINT = (
    "start one with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or `docker compose up -d postgres`), or point TIMELINE_DB / TIMELINE_TEST_PG at a running server"
)

SCHEMA_LOCK = 0x74696D656C696E65
"""Advisory lock key ("timeline") held while creating the schema."""

SIDE_TABLES = [
    "CREATE TABLE IF NOT EXISTS timeline_event_index ("
    " event_id uuid PRIMARY KEY, customer_id text NOT NULL,"
    " version bigint NOT NULL, hash text NOT NULL, UNIQUE (customer_id, version))",
    "CREATE TABLE IF NOT EXISTS timeline_heads ("
    " customer_id text PRIMARY KEY, version bigint NOT NULL, hash text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS timeline_keys (customer_id text PRIMARY KEY, wrapped_key bytea)",
    "CREATE TABLE IF NOT EXISTS timeline_referrals (event_id uuid PRIMARY KEY, referred_customer_id text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS timeline_referrals_referred ON timeline_referrals (referred_customer_id)",
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name text PRIMARY KEY, value text NOT NULL)",
    "CREATE OR REPLACE FUNCTION timeline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'timeline: % is append-only (% refused)', TG_TABLE_NAME, TG_OP "
    "USING ERRCODE = 'insufficient_privilege'; END $$",
    "CREATE OR REPLACE FUNCTION timeline_guard_key() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN IF TG_OP = 'UPDATE' AND {KEY_GUARD} THEN RETURN NEW; END IF; "
    f"RAISE EXCEPTION '{KEY_REFUSED} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege'; END $$",
    "CREATE OR REPLACE TRIGGER timeline_keys_only_erasure BEFORE UPDATE OR DELETE ON timeline_keys "
    "FOR EACH ROW EXECUTE FUNCTION timeline_guard_key()",
    "CREATE OR REPLACE TRIGGER timeline_keys_no_truncate BEFORE TRUNCATE ON timeline_keys "
    "FOR EACH STATEMENT EXECUTE FUNCTION timeline_refuse_change()",
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
    *POSTGRES_TABLES,
]


class _Recorder(PostgresApplicationRecorder):
    """The library's recorder, writing our side tables in the same transaction."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE)
        self.sql_create_statements.extend(SQL(s) for s in SIDE_TABLES)  # type: ignore[arg-type]

    def _insert_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        batch: AppendBatch = kwargs["batch"]
        if batch.events:
            # The library locks the events table only after this hook; take it first, so that concurrent
            # writers queue here instead of deadlocking on the index's and heads' rows (taken in any order).
            self._lock_table(curs)
            check_reads(curs, batch, "%s", own_written=False)
            customers, versions, ids, _, _, hashes, _ = _columns(batch.events)
            curs.execute(
                "INSERT INTO timeline_event_index (event_id, customer_id, version, hash) "
                "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[], %b::text[])",
                [ids, customers, versions, hashes],
            )
        referrals = [e for e in batch.events if e.refers_to]
        side_writes(
            curs,
            AppendBatch(events=referrals, new_keys=batch.new_keys),
            "%s",
            index_and_heads=False,
        )
        if batch.events:
            last = {e.customer_id: (e.version, e.hash) for e in batch.events}
            curs.execute(
                "INSERT INTO timeline_heads (customer_id, version, hash) "
                "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[]) "
                "ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, hash = excluded.hash",
                [list(last), [v for v, _ in last.values()], [h for _, h in last.values()]],
            )

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        """The library's insert, with plain arrays instead of an array of composites.

        Same lock (commit-ordered positions) and notification; psycopg dumps
        composite arrays as escaped text, which cost more than the database's
        own work for a batch. The rows are the batch's own events
        (:meth:`PostgresEventStore._insert`): the library only counts them.
        """
        batch: AppendBatch = kwargs["batch"]
        customers, versions, _, types, states, _, _ = _columns(batch.events)
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[]) RETURNING notification_id",
            [customers, versions, types, states],
        )
        if batch.destroy_keys:  # after the events (the keys' trigger wants the erasure stored), on a cursor
            with curs.connection.cursor() as keys:  # of its own: the library fetches the positions from ``curs``
                destroy_keys(keys, batch, "%s")


def _columns(events: list[NewEvent]) -> list[list[Any]]:
    """The batch's events as one list per field, for array parameters."""
    return [list(column) for column in zip(*events, strict=True)] if events else [[] for _ in NewEvent._fields]


class _Datastore(PostgresDatastore):
    """The library's datastore without server-side prepared statements.

    psycopg prepares a statement after its fifth execution; a transaction that
    then fails on a unique key (a lost race, which ingestion retries) can leave
    the connection's cache naming a statement the server no longer has
    ("prepared statement _pg3_N does not exist").
    """

    def after_connect_func(self) -> Any:
        configure = super().after_connect_func()

        def after_connect(conn: Any) -> None:
            configure(conn)
            conn.prepare_threshold = None

        return after_connect


def _schema_present(conn: psycopg.Connection) -> bool:
    """Whether every table, index and trigger exists: then opening a store runs no DDL.

    DDL on an existing schema takes locks in the opposite order to an append,
    so re-running it while another process appends can deadlock.
    """
    objects = [
        EVENTS_TABLE,
        "timeline_event_index",
        "timeline_heads",
        "timeline_keys",
        "timeline_referrals",
        "timeline_referrals_referred",
        META_TABLE,
        *POSTGRES_OBJECTS,
    ]
    row = conn.execute(
        "SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%s::text[]) AS name", (objects,)
    ).fetchone()
    names = [f"{t}_{kind}" for t in IMMUTABLE_TABLES for kind in ("immutable", "no_truncate")]
    names += ["timeline_keys_only_erasure", "timeline_keys_no_truncate", *POSTGRES_TRIGGERS]
    triggers = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s)", (names,)).fetchone()
    return bool(row and row[0]) and bool(triggers and triggers[0] == len(names))


def _tables(conn: psycopg.Connection) -> set[str]:
    """The user tables visible on the connection's search path."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    return {r[0] for r in rows}


STREAMS_PER_QUERY = 5000


def _version(row: StoredRow) -> int:
    return row.version


def _index_order(entry: IndexEntry | None) -> tuple[str, int]:
    return (entry.customer_id, entry.version) if entry else ("", 0)


class PostgresEventStore(SqlEventStore):
    mark = "%s"
    _position = "notification_id"

    def __init__(self, url: str, pool_size: int = 2, create: bool = True, alongside_other_tables: bool = True) -> None:
        """``create=False``: open only an existing store, adding nothing (no table, no trigger)."""
        self.url = url
        params = psycopg.conninfo.conninfo_to_dict(url)
        try:
            probe = psycopg.connect(url, connect_timeout=5, autocommit=True)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not create and f'database "{params.get("dbname", "")}" does not exist' in first:
                raise NoStore(f"no timeline store at {shown_url(url)}: {first}") from None
            raise StoreUnavailable(f"cannot reach PostgreSQL at {_safe(url)}: {first}; {START_HINT}") from None
        try:
            tables = _tables(probe)
            if EVENTS_TABLE not in tables:
                if not create:
                    raise NoStore(f"no timeline store at {shown_url(url)}")
                if not alongside_other_tables:
                    other_tables_refused(shown_url(url), tables)
            self._open(params, pool_size, probe, create)
        finally:
            probe.close()

    def _has_table(self, name: str) -> bool:
        return bool(self._rows("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0])

    def _open(self, params: dict[str, Any], pool_size: int, probe: psycopg.Connection, create: bool) -> None:
        self._datastore = _Datastore(
            dbname=str(params.get("dbname", "postgres")),
            host=str(params.get("host", "127.0.0.1")),
            port=str(params.get("port", 5432)),
            user=str(params.get("user", "postgres")),
            password=str(params.get("password", "")),
            pool_size=pool_size,
            max_overflow=2,
            originator_id_type="text",
            connect_timeout=5,
        )
        # The library waits for a full pool on every checkout when given an open timeout, and two
        # threads waiting at once trip psycopg_pool's assertion: open it once, here, instead.
        self._datastore.pool.open(wait=True, timeout=10)
        self._recorder = _Recorder(self._datastore)
        if not create or _schema_present(probe):
            return
        # Two processes creating the schema of a new database at once collide in the catalogs
        # (duplicate pg_type rows, concurrently updated functions): one at a time.
        probe.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        self._recorder.create_table()

    def _check_reads(self, batch: AppendBatch) -> None:
        with self._datastore.get_connection() as conn, conn.cursor() as c:
            check_reads(c, batch, "%s", own_written=False)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows as tuples, fetched in binary format: twice as fast for event bytes as hex text."""
        with (
            self._datastore.get_connection() as conn,
            conn.cursor(row_factory=psycopg.rows.tuple_row, binary=True) as c,
        ):
            c.execute(sql, params)
            return c.fetchall()

    def lookup_events(self, event_ids: Sequence[UUID]) -> dict[UUID, IndexEntry]:
        """One array parameter instead of thousands of placeholders: planning cost dominated."""
        rows = self._rows(
            "SELECT event_id, customer_id, version, hash FROM timeline_event_index WHERE event_id = ANY(%b::uuid[])",
            (list(event_ids),),
        )
        return {r[0]: IndexEntry(r[0], r[1], r[2], r[3]) for r in rows}

    def read_rows(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], StoredRow]:
        """Two array parameters joined on the primary key: a list of pairs took longer to plan than to run."""
        pairs = list(dict.fromkeys(keys))
        if not pairs:
            return {}
        rows = self._rows(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.state "
            f"FROM unnest(%b::text[], %b::bigint[]) AS k(customer_id, version) JOIN {EVENTS_TABLE} e "
            "ON e.originator_id = k.customer_id AND e.originator_version = k.version",
            ([c for c, _ in pairs], [v for _, v in pairs]),
        )
        return {(r[1], r[2]): StoredRow(r[0], r[1], r[2], state_bytes(r[3])) for r in rows}

    def referrals_naming(self, customer_ids: Iterable[str]) -> dict[str, list[IndexEntry]]:
        """The referrals, then their index entries by primary key: two small queries.

        Joined in one, the planner (without statistics on a young store) hashed
        the whole event-id index for a handful of referrals: a scan of every
        event per batch.
        """
        named = self._rows(
            "SELECT referred_customer_id, event_id FROM timeline_referrals "
            "WHERE referred_customer_id = ANY(%b::text[])",
            (list(dict.fromkeys(customer_ids)),),
        )
        entries = self.lookup_events([event_id for _, event_id in named])
        found: dict[str, list[IndexEntry]] = {}
        for referred, event_id in sorted(named, key=lambda r: _index_order(entries.get(r[1]))):
            entry = entries.get(event_id)
            if entry is not None:
                found.setdefault(referred, []).append(entry)
        return found

    def read_streams(self, customer_ids: Iterable[str]) -> dict[str, list[StoredRow]]:
        """One array parameter, rows in heap order, sorted here: a third of the time of sorting in the server."""
        ids = list(dict.fromkeys(customer_ids))
        result: dict[str, list[StoredRow]] = {c: [] for c in ids}
        for i in range(0, len(ids), STREAMS_PER_QUERY):
            for r in self._rows(
                f"SELECT notification_id, originator_id, originator_version, state FROM {EVENTS_TABLE} "
                "WHERE originator_id = ANY(%b::text[])",
                (ids[i : i + STREAMS_PER_QUERY],),
            ):
                result[r[1]].append(StoredRow(r[0], r[1], r[2], state_bytes(r[3])))
        for rows in result.values():
            rows.sort(key=_version)
        return result

    def _insert(self, batch: AppendBatch) -> Sequence[int]:
        """The library's transaction around our hooks, which write every row from ``batch`` itself.

        Its ``stored_events`` are only counted by the library, so the batch's
        events stand in for them: no library ``StoredEvent`` is made per event.
        """
        return self._recorder.insert_events(batch.events, batch=batch) or []

    def close(self) -> None:
        self._datastore.close()


def shown_url(url: str) -> str:
    """The URL as given, without its password."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', 'localhost')}{port}/{params.get('dbname', '')}"


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
