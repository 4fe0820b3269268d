"""The read models' PostgreSQL database: connecting, idempotent DDL, and the lock a rebuild's swap takes.

Queries never need a lock: a rebuild renames complete tables in one
transaction, under :data:`SWAP_LOCK` taken exclusively; consumers take it
shared for each batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from timeline.domain.errors import ConfigurationError, StoreUnavailable
from timeline.store import StoreUrl

SWAP_LOCK = 7432
"""Advisory lock class: consumers take it shared per batch, a rebuild's swap takes it exclusively."""


def is_postgres(url: str) -> bool:
    """A PostgreSQL URL (the read models live nowhere else); any other text, even no URL at all, is not."""
    try:
        return StoreUrl.parse(url).is_postgres
    except ConfigurationError:
        return False


def connect(url: str) -> psycopg.Connection:
    if not is_postgres(url):
        raise ConfigurationError(f"the read model lives in PostgreSQL: give --db postgresql://…, not {url!r}")
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach the read-model database: {str(exc).strip().splitlines()[0]}") from None


def ensure(conn: psycopg.Connection, statements: Iterable[str]) -> None:
    """Run DDL in its own transaction, serialised by an advisory lock (concurrent CREATE IF NOT EXISTS races)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (SWAP_LOCK,))
        for stmt in statements:
            conn.execute(stmt)


def table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
