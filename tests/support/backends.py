"""Which stores a test runs on, and whether the PostgreSQL test server is there.

The rules run on the in-memory store (no server needed); a test marked
``every_backend`` runs on memory, SQLite and PostgreSQL, and one marked
``sql_backends`` or asking for a URL (``db_url``) on the two with a URL.
Without PostgreSQL its tests are skipped, naming the URL tried — unless
``TIMELINE_REQUIRE_PG=1`` (CI), where an unreachable server fails the run.
"""

from __future__ import annotations

import functools
import os

import psycopg
import pytest

MEMORY, SQLITE, POSTGRES = "memory", "sqlite", "postgres"
WITH_URL = (SQLITE, POSTGRES)
ALL = (MEMORY, *WITH_URL)
ADMIN_URL = os.environ.get("TIMELINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("TIMELINE_REQUIRE_PG", "") not in ("", "0")

every_backend = pytest.mark.backends(*ALL)
"""Run the test's ``store`` (and ``engine``, ``branch``) on every backend, not only in memory."""
sql_backends = pytest.mark.backends(*WITH_URL)
"""Run the test's ``store`` on SQLite and PostgreSQL only: what only a SQL store keeps (grants, access log)."""


def backends_for(marked: tuple[str, ...] | None, needs_url: bool) -> list[str]:
    """The backends of one test: as marked (default memory only), without memory if it needs a URL."""
    chosen = list(marked) if marked else list(WITH_URL if needs_url else (MEMORY,))
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        raise ValueError(f"unknown backends {unknown}: choose from {list(ALL)}")
    return [b for b in chosen if b != MEMORY] if needs_url else chosen


@functools.cache
def postgres_unreachable() -> str | None:
    """Why the PostgreSQL test server cannot be used (None if it can); asked once per run."""
    try:
        psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {ADMIN_URL}: {first}"
    return None


def require_postgres() -> None:
    """Skip the calling test without PostgreSQL; under ``TIMELINE_REQUIRE_PG`` fail the whole run instead."""
    reason = postgres_unreachable()
    if reason is None:
        return
    if REQUIRE_PG:
        pytest.exit(
            f"{reason} (TIMELINE_REQUIRE_PG is set). Start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
            "— or set TIMELINE_TEST_PG to the admin URL of a running server.",
            returncode=3,
        )
    pytest.skip(reason)


def admin() -> psycopg.Connection:
    """An autocommit connection to the test server's admin database (call :func:`require_postgres` first)."""
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server, with the admin URL's user and password."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
