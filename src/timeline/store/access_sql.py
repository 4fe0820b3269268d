"""Grants and the access trail in the store's database (SQLite or PostgreSQL).

Two tables, created with the store's others (:data:`SQLITE_TABLES`,
:data:`POSTGRES_TABLES` are part of each backend's schema):

- ``timeline_grants``: one row per grant ever made, keyed by its token's
  SHA-256; a name holds at most one active grant. Rows are never deleted, and
  the only update allowed is a revocation (``revoked_at`` set once, nothing
  else changed);
- ``timeline_access_log``: the access trail, hash-chained by the application;
  triggers refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL), like the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError

from timeline.application.ports import AccessRecord, AccessStore, EventStore, GrantRecord
from timeline.domain.errors import ConfigurationError
from timeline.store import StoreUrl
from timeline.store.sql import SqlEventStore

GRANTS_TABLE = "timeline_grants"
ACCESS_LOG_TABLE = "timeline_access_log"
ACCESS_TABLES = (GRANTS_TABLE, ACCESS_LOG_TABLE)
_ACTIVE_NAME_INDEX = f"{GRANTS_TABLE}_active_name"
_GRANT_COLUMNS = "name, role, rm, branch, token_hash, granted_at, revoked_at"
_LOG_COLUMNS = "seq, at, principal, role, customer_id, what, purpose, prev_hash, hash"
_GRANT_REFUSED = "timeline: a grant is never deleted or changed, only revoked once"


def _grant_guard(same: str) -> str:
    """The one change a grant may undergo: ``revoked_at`` set, every other column as it was."""
    unchanged = " AND ".join(f"NEW.{c} {same} OLD.{c}" for c in ("name", "role", "rm", "branch", "token_hash"))
    return f"OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL AND NEW.granted_at = OLD.granted_at AND {unchanged}"


def _tables(text: str, integer: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {GRANTS_TABLE} (token_hash {text} PRIMARY KEY, name {text} NOT NULL,"
        f" role {text} NOT NULL, rm {text}, branch {text}, granted_at {text} NOT NULL, revoked_at {text})",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {_ACTIVE_NAME_INDEX} ON {GRANTS_TABLE} (name) WHERE revoked_at IS NULL",
        f"CREATE TABLE IF NOT EXISTS {ACCESS_LOG_TABLE} (seq {integer} PRIMARY KEY, at {text} NOT NULL,"
        f" principal {text} NOT NULL, role {text} NOT NULL, customer_id {text}, what {text} NOT NULL,"
        f" purpose {text}, prev_hash {text} NOT NULL, hash {text} NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {ACCESS_LOG_TABLE}_customer ON {ACCESS_LOG_TABLE} (customer_id, seq)",
        f"CREATE INDEX IF NOT EXISTS {ACCESS_LOG_TABLE}_principal ON {ACCESS_LOG_TABLE} (principal, seq)",
    ]


SQLITE_TABLES = [
    *_tables("TEXT", "INTEGER"),
    *(
        f"CREATE TRIGGER IF NOT EXISTS {ACCESS_LOG_TABLE}_no_{op.lower()} BEFORE {op} ON {ACCESS_LOG_TABLE} "
        f"BEGIN SELECT RAISE(ABORT, 'timeline: {ACCESS_LOG_TABLE} is append-only ({op} refused)'); END"
        for op in ("UPDATE", "DELETE")
    ),
    f"CREATE TRIGGER IF NOT EXISTS {GRANTS_TABLE}_no_delete BEFORE DELETE ON {GRANTS_TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{_GRANT_REFUSED} (DELETE refused)'); END",
    f"CREATE TRIGGER IF NOT EXISTS {GRANTS_TABLE}_only_revoke BEFORE UPDATE ON {GRANTS_TABLE} "
    f"WHEN NOT ({_grant_guard('IS')}) BEGIN SELECT RAISE(ABORT, '{_GRANT_REFUSED} (UPDATE refused)'); END",
    # INSERT OR REPLACE deletes a colliding row without firing DELETE triggers: refuse any insert over one.
    f"CREATE TRIGGER IF NOT EXISTS {ACCESS_LOG_TABLE}_no_replace BEFORE INSERT ON {ACCESS_LOG_TABLE} "
    f"WHEN EXISTS (SELECT 1 FROM {ACCESS_LOG_TABLE} WHERE seq = NEW.seq) "
    f"BEGIN SELECT RAISE(ABORT, 'timeline: {ACCESS_LOG_TABLE} is append-only (INSERT over an existing row refused)');"
    " END",
    f"CREATE TRIGGER IF NOT EXISTS {GRANTS_TABLE}_no_replace BEFORE INSERT ON {GRANTS_TABLE} "
    f"WHEN EXISTS (SELECT 1 FROM {GRANTS_TABLE} WHERE token_hash = NEW.token_hash "
    "OR (name = NEW.name AND revoked_at IS NULL)) "
    f"BEGIN SELECT RAISE(ABORT, '{_GRANT_REFUSED} (INSERT over an existing grant refused)'); END",
]
"""The SQLite schema of the access tables."""

POSTGRES_TABLES = [
    *_tables("text", "bigint"),
    "CREATE OR REPLACE FUNCTION timeline_guard_grant() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN IF TG_OP = 'UPDATE' AND {_grant_guard('IS NOT DISTINCT FROM')} THEN RETURN NEW; END IF; "
    f"RAISE EXCEPTION '{_GRANT_REFUSED} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege'; END $$",
    f"CREATE OR REPLACE TRIGGER {GRANTS_TABLE}_only_revoke BEFORE UPDATE OR DELETE ON {GRANTS_TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION timeline_guard_grant()",
    f"CREATE OR REPLACE TRIGGER {GRANTS_TABLE}_no_truncate BEFORE TRUNCATE ON {GRANTS_TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION timeline_refuse_change()",
    f"CREATE OR REPLACE TRIGGER {ACCESS_LOG_TABLE}_immutable BEFORE UPDATE OR DELETE ON {ACCESS_LOG_TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION timeline_refuse_change()",
    f"CREATE OR REPLACE TRIGGER {ACCESS_LOG_TABLE}_no_truncate BEFORE TRUNCATE ON {ACCESS_LOG_TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION timeline_refuse_change()",
]
"""The PostgreSQL schema of the access tables (after ``timeline_refuse_change()``, which the store defines)."""

POSTGRES_OBJECTS = [*ACCESS_TABLES, _ACTIVE_NAME_INDEX]
POSTGRES_TRIGGERS = [
    f"{GRANTS_TABLE}_only_revoke",
    f"{GRANTS_TABLE}_no_truncate",
    f"{ACCESS_LOG_TABLE}_immutable",
    f"{ACCESS_LOG_TABLE}_no_truncate",
]
"""What a PostgreSQL store must hold for its schema to count as present (else opening to write creates it)."""


class SqlAccessStore(AccessStore):
    """The access tables of one SQL event store, reached through that store's connections."""

    def __init__(self, store: SqlEventStore) -> None:
        self.store, self.mark = store, store.mark
        self._conflicts: tuple[type[Exception], ...] = (IntegrityError,)
        self._postgres = StoreUrl.parse(store.url).is_postgres
        if self._postgres:
            import psycopg  # only for a PostgreSQL store: the embedded one's commands need not load it

            self._conflicts += (psycopg.errors.IntegrityError,)
        self._present: set[str] = set()
        """Tables seen to exist (tables are never dropped, so a request asks the database once, not each time)."""

    def _has(self, table: str) -> bool:
        if table not in self._present and self.store._has_table(table):
            self._present.add(table)
        return table in self._present

    def has_access_tables(self) -> bool:
        return all(self._has(t) for t in ACCESS_TABLES)

    def _write(self, sql: str, params: tuple[Any, ...], rows: int = 1) -> bool:
        """Run one statement as a transaction of its own; whether it changed ``rows`` rows (not on a uniqueness
        conflict).

        On PostgreSQL it runs on one of the library's connections, which are in autocommit mode, so the
        statement is its own transaction: one round trip, not three (BEGIN, the statement, COMMIT). The
        statement says what it changed with ``RETURNING`` (the library's SQLite cursor has no rowcount).
        """
        try:
            if self._postgres:
                with self.store._datastore.get_connection() as conn:  # type: ignore[attr-defined]
                    return len(conn.execute(sql + " RETURNING 1", params).fetchall()) == rows
            with self.store._datastore.transaction(commit=True) as c:
                c.execute(sql + " RETURNING 1", params)
                return len(c.fetchall()) == rows
        except self._conflicts:
            return False

    def add_grant(self, grant: GrantRecord) -> bool:
        p = self.mark
        return self._write(
            f"INSERT INTO {GRANTS_TABLE} ({_GRANT_COLUMNS}) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
            (grant.name, grant.role, grant.rm, grant.branch, grant.token_hash, grant.granted_at, None),
        )

    def revoke_grant(self, name: str, at: str) -> bool:
        p = self.mark
        return self._write(
            f"UPDATE {GRANTS_TABLE} SET revoked_at = {p} WHERE name = {p} AND revoked_at IS NULL", (at, name)
        )

    def grants(self) -> list[GrantRecord]:
        if not self.has_access_tables():
            return []
        rows = self.store._rows(f"SELECT {_GRANT_COLUMNS} FROM {GRANTS_TABLE} ORDER BY granted_at, name")
        return [GrantRecord(*r) for r in rows]

    def grant_by_hash(self, token_hash: str) -> GrantRecord | None:
        if not self._has(GRANTS_TABLE):
            return None  # a store made before grants existed: no token is valid on it
        rows = self.store._rows(
            f"SELECT {_GRANT_COLUMNS} FROM {GRANTS_TABLE} WHERE token_hash = {self.mark}", (token_hash,)
        )
        return GrantRecord(*rows[0]) if rows else None

    def access_head(self) -> AccessRecord | None:
        rows = self.store._rows(f"SELECT {_LOG_COLUMNS} FROM {ACCESS_LOG_TABLE} ORDER BY seq DESC LIMIT 1")
        return AccessRecord(*rows[0]) if rows else None

    def append_access(self, record: AccessRecord) -> bool:
        return self.append_accesses([record])

    def append_accesses(self, records: Sequence[AccessRecord]) -> bool:
        """Insert the records only if the first ``seq`` follows the newest stored one, in the insert's own
        statement: one transaction (one commit) for many accesses."""
        if not records:
            return True
        p = self.mark
        row = f"({', '.join([p] * 9)})"
        params: list[Any] = []
        for r in records:
            params += (r.seq, r.at, r.principal, r.role, r.customer_id, r.what, r.purpose, r.prev_hash, r.hash)
        return self._write(
            f"INSERT INTO {ACCESS_LOG_TABLE} ({_LOG_COLUMNS}) SELECT * FROM (VALUES {', '.join([row] * len(records))})"
            f" AS v WHERE (SELECT COALESCE(MAX(seq), 0) FROM {ACCESS_LOG_TABLE}) = {p}",
            (*params, records[0].seq - 1),
            len(records),
        )

    def read_access(
        self,
        after: int,
        limit: int,
        customer_id: str | None = None,
        principal: str | None = None,
        since: str | None = None,
    ) -> list[AccessRecord]:
        if not self.has_access_tables():
            return []
        p = self.mark
        where, params = [f"seq > {p}"], [after]
        for column, value in (("customer_id", customer_id), ("principal", principal)):
            if value is not None:
                where.append(f"{column} = {p}")
                params.append(value)
        if since is not None:
            where.append(f"at >= {p}")
            params.append(since)
        rows = self.store._rows(
            f"SELECT {_LOG_COLUMNS} FROM {ACCESS_LOG_TABLE} WHERE {' AND '.join(where)} ORDER BY seq LIMIT {p}",
            (*params, limit),
        )
        return [AccessRecord(*r) for r in rows]


def access_store(store: EventStore) -> SqlAccessStore:
    """The access tables beside an event store (which must be one of the SQL stores)."""
    if not isinstance(store, SqlEventStore):
        raise ConfigurationError(f"grants and the access log need a SQL store, not {type(store).__name__}")
    return SqlAccessStore(store)
