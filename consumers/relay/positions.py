"""Where each relay (name, topic) has published up to: ``timeline_relay_positions`` in the store's database."""

from __future__ import annotations

import logging
import sqlite3
import zlib
from typing import Any

import psycopg

from timeline.consumers.backoff import Backoff, GaveUp
from timeline.domain.errors import TimelineError
from timeline.store import StoreUrl
from timeline.store.memory import URL as MEMORY_URL

log = logging.getLogger(__name__)

LOCK_RETRY = 0.2
LOCK_RETRY_MAX = 2.0
"""Seconds between attempts to take a relay's lock (doubling): a killed relay's session may linger a moment."""


class RelayError(TimelineError):
    """The relay cannot run as configured (e.g. another copy holds its position)."""


class PositionStore:
    """``timeline_relay_positions``: where each relay (name, topic) has published up to.

    Same database as the store, own connection (the store's port has no
    mutable tables). Created idempotently.
    """

    def __init__(self, url: str, lock: bool = True, lock_wait: float = 10.0) -> None:
        self.url = url
        self._lock = lock
        self._lock_wait = lock_wait
        self._locked: tuple[str, str] | None = None
        self._conn: Any = None
        self._connect()

    @property
    def is_postgres(self) -> bool:
        return self.url != MEMORY_URL and StoreUrl.parse(self.url).is_postgres

    def _connect(self) -> None:
        if self.is_postgres:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS timeline_relay_positions ("
                " name text NOT NULL, topic text NOT NULL, position bigint NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (name, topic))"
            )
            if self._locked:
                name, topic = self._locked
                self._locked = None
                self.acquire(name, topic)
        else:
            # a store in memory keeps its relay's positions in memory too: both last as long as the process
            path = ":memory:" if self.url == MEMORY_URL else StoreUrl.parse(self.url).sqlite_path
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS timeline_relay_positions ("
                " name TEXT NOT NULL, topic TEXT NOT NULL, position INTEGER NOT NULL,"
                " updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (name, topic))"
            )

    def acquire(self, name: str, topic: str) -> None:
        """PostgreSQL: hold an advisory lock on (name, topic) for this connection's life.

        Waits up to ``lock_wait`` seconds: the server session of a relay that
        was just killed may linger a moment before its lock is released.
        """
        if not (self.is_postgres and self._lock) or self._locked == (name, topic):
            return
        key = zlib.crc32(f"timeline-relay\0{name}\0{topic}".encode()) - 2**31
        waiting = Backoff(log, f"relay {name}", LOCK_RETRY, LOCK_RETRY_MAX, self._lock_wait)
        while not self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (7431, key)).fetchone()[0]:
            busy = RelayError(f"another relay named {name!r} is publishing to topic {topic!r} from this database")
            try:
                waiting.failed(busy, "taking its position lock")
            except GaveUp:
                raise busy from None
        self._locked = (name, topic)

    def load(self, name: str, topic: str) -> int:
        mark = "%s" if self.is_postgres else "?"
        row = self._conn.execute(
            f"SELECT position FROM timeline_relay_positions WHERE name = {mark} AND topic = {mark}", (name, topic)
        ).fetchone()
        return int(row[0]) if row else 0

    def save(self, name: str, topic: str, position: int) -> None:
        mark = "%s" if self.is_postgres else "?"
        now = "now()" if self.is_postgres else "CURRENT_TIMESTAMP"
        self._conn.execute(
            f"INSERT INTO timeline_relay_positions (name, topic, position) VALUES ({mark}, {mark}, {mark}) "
            f"ON CONFLICT (name, topic) DO UPDATE SET position = excluded.position, updated_at = {now}",
            (name, topic, position),
        )

    def reconnect(self) -> None:
        self.close()
        self._connect()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None
