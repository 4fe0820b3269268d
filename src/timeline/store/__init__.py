"""Opening an event store from a URL: ``sqlite:///path`` or ``postgresql://…``."""

from __future__ import annotations

import os

from timeline.errors import ConfigurationError
from timeline.store.port import EventStore

DEFAULT_URL = "sqlite:///timeline.db"


def resolve_url(url: str | None) -> str:
    """``--db`` beats ``TIMELINE_DB`` beats ``./timeline.db``."""
    return url or os.environ.get("TIMELINE_DB") or DEFAULT_URL


def open_store(url: str | None = None) -> EventStore:
    url = resolve_url(url)
    if url.startswith("sqlite:///"):
        from timeline.store.sqlite import SQLiteEventStore

        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigurationError("sqlite URL needs a path: sqlite:///timeline.db")
        return SQLiteEventStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from timeline.store.postgres import PostgresEventStore

        return PostgresEventStore(url)
    raise ConfigurationError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
