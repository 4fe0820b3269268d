"""Opening an event store from a URL: ``sqlite:///path`` or ``postgresql://…``."""

from __future__ import annotations

from dataclasses import dataclass

from timeline.application.ports import EventStore
from timeline.domain.errors import ConfigurationError

DEFAULT_URL = "sqlite:///timeline.db"
SQLITE = "sqlite:///"
POSTGRES = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A store URL whose scheme has been recognised: the one place that reads a URL's scheme."""

    text: str

    @classmethod
    def parse(cls, url: str | None) -> StoreUrl:
        """``url`` (``None``: :data:`DEFAULT_URL`), refused unless it is SQLite with a path or PostgreSQL."""
        url = url or DEFAULT_URL
        if url.startswith(SQLITE):
            if not url[len(SQLITE) :]:
                raise ConfigurationError("sqlite URL needs a path: sqlite:///timeline.db")
            return cls(url)
        if url.startswith(POSTGRES):
            return cls(url)
        raise ConfigurationError(
            f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )

    @property
    def is_postgres(self) -> bool:
        return self.text.startswith(POSTGRES)

    @property
    def embedded(self) -> bool:
        """An embedded SQLite file (its key file may live beside it)."""
        return not self.is_postgres

    @property
    def sqlite_path(self) -> str:
        """The SQLite file's path; a PostgreSQL URL has none."""
        if self.is_postgres:
            raise ConfigurationError(f"{self.shown} is not a SQLite URL")
        return self.text[len(SQLITE) :]

    @property
    def shown(self) -> str:
        """The URL for messages: a PostgreSQL one without its password."""
        if self.is_postgres:
            from timeline.store.postgres import shown_url as without_password

            return without_password(self.text)
        return self.text


def resolve_url(url: str | None) -> str:
    """``url``, else :data:`DEFAULT_URL` (the CLI has already put ``--db`` or ``TIMELINE_DB`` in it)."""
    return url or DEFAULT_URL


def open_store(url: str | None = None, create: bool = True, alongside_other_tables: bool = True) -> EventStore:
    """The store at ``url``.

    ``create=False`` (commands that read): a missing store is :class:`~timeline.domain.errors.NoStore` and
    nothing is created, not even an empty SQLite file. ``alongside_other_tables=False`` (the CLI's
    creating commands): a new store is refused in a database that already holds other tables.
    """
    parsed = StoreUrl.parse(url)
    if parsed.is_postgres:
        from timeline.store.postgres import PostgresEventStore

        return PostgresEventStore(parsed.text, create=create, alongside_other_tables=alongside_other_tables)
    from timeline.store.sqlite import SQLiteEventStore

    return SQLiteEventStore(parsed.sqlite_path, create=create, alongside_other_tables=alongside_other_tables)


def shown_url(url: str) -> str:
    """The URL for messages: a PostgreSQL one without its password."""
    return StoreUrl(url).shown
