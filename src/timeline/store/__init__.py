"""Opening an event store from a URL: ``sqlite:///path`` or ``postgresql://…``."""

from __future__ import annotations

import os

from timeline.application.ports import EventStore
from timeline.domain.errors import ConfigurationError

DEFAULT_URL = "sqlite:///timeline.db"


def resolve_url(url: str | None) -> str:
    """``--db`` beats ``TIMELINE_DB`` beats ``./timeline.db``."""
    return url or os.environ.get("TIMELINE_DB") or DEFAULT_URL


def open_store(url: str | None = None, create: bool = True, alongside_other_tables: bool = True) -> EventStore:
    """The store at ``url``.

    ``create=False`` (commands that read): a missing store is :class:`~timeline.domain.errors.NoStore` and
    nothing is created, not even an empty SQLite file. ``alongside_other_tables=False`` (the CLI's
    creating commands): a new store is refused in a database that already holds other tables.
    """
    url = resolve_url(url)
    if url.startswith("sqlite:///"):
        from timeline.store.sqlite import SQLiteEventStore

        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigurationError("sqlite URL needs a path: sqlite:///timeline.db")
        return SQLiteEventStore(path, create=create, alongside_other_tables=alongside_other_tables)
    if url.startswith(("postgresql://", "postgres://")):
        from timeline.store.postgres import PostgresEventStore

        return PostgresEventStore(url, create=create, alongside_other_tables=alongside_other_tables)
    raise ConfigurationError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def shown_url(url: str) -> str:
    """The URL for messages: a PostgreSQL one without its password."""
    if url.startswith(("postgresql://", "postgres://")):
        from timeline.store.postgres import shown_url as without_password

        return without_password(url)
    return url
