"""Real databases for every test: a fresh PostgreSQL database or SQLite file each.

PostgreSQL comes from ``TIMELINE_TEST_PG`` (an admin URL; default the local
server at 127.0.0.1:5432, user postgres). Each test that asks for it gets a
database of its own, dropped afterwards, so no two tests share state.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from timeline.application.ports import EventStore
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store

ADMIN_URL = os.environ.get("TIMELINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN = uuid.uuid4().hex[:8]
KEK = bytes(range(32))
BACKENDS = ["sqlite", "postgres"]


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(
            f"PostgreSQL is unreachable at {ADMIN_URL} ({str(exc).strip().splitlines()[0]}). "
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
            "— or set TIMELINE_TEST_PG to the admin URL of a running server.",
            returncode=3,
        )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test only."""
    name = f"tl_test_{RUN}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = name
    yield _url(info)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url(info: dict) -> str:
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'timeline.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str:
    """The URL of a fresh store, once per backend."""
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")


@pytest.fixture
def store(db_url) -> Iterator[EventStore]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def engine(store) -> Engine:
    return Engine(store, KeyWrapper(KEK))


@pytest.fixture
def clock() -> Callable[[], dt.datetime]:
    """A fixed 'now', so acceptance of future events is deterministic."""
    return lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Branch:
    """A store seen the way the projection rules talk about it: send events at a system time, ask states.

    ``recording_at`` is the system time (``recorded_at``) given to what is sent
    next; it defaults to far after every business time used in the tests.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def recording_at(self, when: str) -> Branch:
        self.now = _instant(when)
        return self

    def send(self, *events: dict, batch_size: int = 1000) -> list:
        """Ingest events (a batch), returning each outcome; rejects do not raise."""
        ingestor = self.engine.ingestor(clock=lambda: self.now, batch_size=batch_size)
        return list(ingestor.ingest(list(enumerate(events, 1))))

    def accept(self, *events: dict, batch_size: int = 1000) -> list:
        """Ingest events that must all be accepted."""
        outcomes = self.send(*events, batch_size=batch_size)
        bad = [(o.line, o.error) for o in outcomes if o.status != "accepted"]
        assert not bad, bad
        return outcomes

    def reject(self, event: dict) -> str:
        """Ingest one event that must be rejected; return the reason."""
        [outcome] = self.send(event)
        assert outcome.status == "rejected", outcome
        return outcome.error

    def state(self, customer_id: str = "C1", as_of: str | None = None, known_at: str | None = None):
        from timeline.application.states import StateReader

        reader = StateReader(self.engine.store, self.engine.policy)
        return reader.state(
            customer_id, _instant(as_of) if as_of else self.now, _instant(known_at) if known_at else self.now
        )

    def stored_types(self, customer_id: str) -> list[str]:
        from timeline.application.keyring import load_history

        return [e.type for e in load_history(self.engine.store, self.engine.keyring(), customer_id)]


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"test instants need an offset: {text}")
    return moment.astimezone(dt.UTC)


@pytest.fixture
def branch(engine) -> Branch:
    return Branch(engine)
