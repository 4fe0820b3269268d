"""The policy versions a read model folds under: the store's, followed as they are published (issue 13).

A view answers as ``state`` does only if it folds under the same versions, so
a consumer given the store's URL reads the store's policy stream at the start
of every transaction it evaluates in (one small read when nothing was
published). ``{prefix}_policy`` holds how many published entries the view's
rows were folded under. The transaction that first finds more records the new
count and marks every customer pending: the catch-up that follows a backlog
folds each again under the new versions, a chunk per transaction, while the
rows keep answering under the old ones until then. A restart finds the count
it left and folds nothing again.

Several members of a group: every evaluating transaction holds the count's
row (``FOR SHARE``, or ``FOR UPDATE`` when it read new entries itself), so the
transaction that marks waits for those still evaluating under the old
versions and marks their rows too; one that finds a count above what it read
reads the stream again before it evaluates.
"""

from __future__ import annotations

import logging

import psycopg

from timeline.application.policy_store import PolicyStream
from timeline.application.ports import EventStore
from timeline.domain.errors import NoStore
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline

log = logging.getLogger(__name__)


def versions_ddl(prefix: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {prefix}_policy (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
        " entries integer NOT NULL DEFAULT 0)",
        f"INSERT INTO {prefix}_policy (one) VALUES (true) ON CONFLICT DO NOTHING",
    ]


class ViewVersions:
    """The store's policy versions as a view folds under them; the base policy alone without a store."""

    def __init__(self, base: Policy, store_url: str | None) -> None:
        self.base = base
        self.store_url = store_url
        self.timeline = PolicyTimeline.single(base)
        """The versions as last read (every published one: ``known_at`` narrows them per evaluation)."""
        self._store: EventStore | None = None
        self._stream: PolicyStream | None = None
        self._read = 0
        """Published entries the view was seen folded under: a stream holding more is locked for update."""

    def read(self) -> int:
        """Read the entries published since the last read; how many there are in all."""
        if self.store_url is None:
            return 0
        if self._stream is None:
            from timeline.store import open_store

            try:
                self._store = open_store(self.store_url, create=False)
            except NoStore as exc:
                raise NoStore(
                    f"{exc}, whose policy versions the read models fold under (--store or TIMELINE_DB)"
                ) from None
            self._stream = PolicyStream(self._store, self.base)
        count = len(self._stream.entries())
        self.timeline = self._stream.known()
        return count

    def sync(self, cur: psycopg.Cursor, prefix: str) -> bool:
        """In an evaluating transaction: the versions brought up to the store's; True when this transaction
        found a publish the view was not folded under and marked every customer pending."""
        if self.store_url is None:
            return False
        count = self.read()
        lock = "FOR UPDATE" if count > self._read else "FOR SHARE"  # never a share lock upgraded: no deadlock
        (saved,) = cur.execute(f"SELECT entries FROM {prefix}_policy {lock}").fetchone()
        if saved > count:  # another member marked a publish after this one read the stream
            count = self.read()
        if count <= saved:
            self._read = count  # seen committed (a count this one records is seen so by its next transaction)
            if count < saved:
                log.warning("%s: folded under %d published policy versions, the store holds %d", prefix, saved, count)
            return False
        cur.execute(f"UPDATE {prefix}_policy SET entries = %s", (count,))
        cur.execute(f"UPDATE {prefix}_streams SET recheck_at = '-infinity'")
        log.info("%s: policy version %d published: every customer is folded again", prefix, count)
        return True

    def close(self) -> None:
        store, self._store, self._stream, self._read = self._store, None, None, 0
        if store is not None:
            store.close()
