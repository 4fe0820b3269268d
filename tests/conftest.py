"""The stores tests run on: in memory for the rules, real databases where the store itself matters.

A test asking for ``store`` (or ``engine``, ``branch``) gets a fresh
in-memory store; marked ``every_backend`` or ``sql_backends``
(``tests.support.backends``) it runs once per backend named. A test asking for ``db_url`` gets a fresh SQLite file and a
fresh PostgreSQL database (its own, dropped afterwards), so no two tests share
state. PostgreSQL comes from ``TIMELINE_TEST_PG`` (an admin URL; default the
local server at 127.0.0.1:5432, user postgres); without it PostgreSQL tests are
skipped, or fail the run under ``TIMELINE_REQUIRE_PG=1``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.backends import (
    MEMORY,
    POSTGRES,
    REQUIRE_PG,
    admin,
    backends_for,
    database_url,
    require_postgres,
)
from tests.support.branch import Branch
from tests.support.keys import KEK
from timeline.application.ports import EventStore
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store
from timeline.store.memory import MemoryEventStore

RUN = uuid.uuid4().hex[:8]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run the test's store on these backends (memory, sqlite, postgres)"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under ``TIMELINE_REQUIRE_PG`` (CI) an unreachable server fails the run before any test, not after many."""
    if REQUIRE_PG:
        require_postgres()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend``: as marked, else memory, else (for a test that needs a URL) SQLite and PostgreSQL."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = backends_for(marker.args if marker else None, needs_url="db_url" in metafunc.fixturenames)
    metafunc.parametrize("backend", names, ids=names)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test only (skipped without a server)."""
    require_postgres()
    name = f"tl_test_{RUN}_{uuid.uuid4().hex[:8]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url(name)
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'timeline.db'}"


@pytest.fixture
def db_url(request, backend: str) -> str:
    """The URL of a fresh store, once per backend that has one."""
    return request.getfixturevalue("pg_url" if backend == POSTGRES else "sqlite_url")


@pytest.fixture
def store(request, backend: str) -> Iterator[EventStore]:
    s = MemoryEventStore() if backend == MEMORY else open_store(request.getfixturevalue("db_url"))
    yield s
    s.close()


@pytest.fixture
def engine(store) -> Engine:
    return Engine(store, KeyWrapper(KEK))


@pytest.fixture
def clock() -> Callable[[], dt.datetime]:
    """A fixed 'now', so acceptance of future events is deterministic."""
    return lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def branch(engine) -> Branch:
    return Branch(engine)
