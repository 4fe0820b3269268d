"""``timeline rebuild summary``: compute ``customer_summary`` again into new tables and swap them in.

:func:`rebuild` computes every row again — from the event store, or from the
topic up to the offsets the consumer has applied — into new tables, then
swaps them in with renames in one transaction, while queries keep answering
from the old tables and a running consumer goes on (what it applies meanwhile
is merged in under the swap's lock).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from kafka import TopicPartition

from timeline.consumers.cloudevents import NotACloudEvent, parse, stored_to_bytes
from timeline.consumers.readmodels import checkpoints, copies, database, summary_tables
from timeline.consumers.readmodels.evaluation import evaluate, utcnow
from timeline.consumers.readmodels.summary import DEFAULT_GROUP, PREFIX, write_rows
from timeline.consumers.readmodels.versions import ViewVersions, versions_ddl
from timeline.domain.errors import TimelineError
from timeline.domain.policy import Policy, load_policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent

NEW = "_new"
OLD = "_old"
CHUNK_EVENTS = 5_000
"""Events a rebuild holds in memory at once (whole customers: one with more is a chunk of its own)."""

Progress = Callable[[str, int, int | None], None]
"""``progress(phase, done, total)``."""

SWAPPED = (
    f"{PREFIX}_events",
    f"{PREFIX}_streams",
    summary_tables.SUMMARY_TABLE,
    summary_tables.MOVES_TABLE,
)


@dataclass
class RebuildResult:
    source: str
    customers: int
    events: int
    merged: int
    seconds: float
    swap_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "customers": self.customers,
            "events": self.events,
            "merged_after_snapshot": self.merged,
            "seconds": round(self.seconds, 3),
            "swap_seconds": round(self.swap_seconds, 3),
        }


def rebuild(
    db_url: str,
    source: str,
    *,
    store_url: str | None = None,
    bootstrap: str | None = None,
    topic: str | None = None,
    group: str = DEFAULT_GROUP,
    policy: Policy | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    progress: Progress | None = None,
    chunk_events: int = CHUNK_EVENTS,
    before_swap: Callable[[], None] | None = None,
) -> RebuildResult:
    """Compute the whole read model into new tables and swap them in atomically.

    Memory holds one chunk of customers at a time (about ``chunk_events`` events; a customer is never split),
    never the whole history. ``store_url``: also the store whose published policy versions the rows are folded
    under (:mod:`.versions`; without it, ``policy`` alone, and a consumer given the store folds them again).
    """
    if source not in ("store", "topic"):
        raise TimelineError(f"rebuild from 'store' or 'topic', not {source!r}")
    if chunk_events < 1:
        raise ValueError("chunk_events must be at least 1")
    policy = policy or load_policy()
    ranks = {level.name: i for i, level in enumerate(policy.tier.tiers)}
    started = time.monotonic()
    conn = database.connect(db_url)
    conn.autocommit = True
    versions = ViewVersions(policy, store_url)
    try:
        database.ensure(
            conn,
            [
                *copies.copy_ddl(PREFIX),
                *checkpoints.checkpoint_ddl(PREFIX),
                *versions_ddl(PREFIX),
                *summary_tables.summary_ddl(),
            ],
        )
        entries = versions.read()
        snapshot_seq = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {PREFIX}_events").fetchone()[0]
        with conn.transaction():
            for table in SWAPPED:
                conn.execute(f"DROP TABLE IF EXISTS {table}{NEW}")
            for stmt in [*copies.copy_ddl(PREFIX, NEW), *summary_tables.summary_ddl(NEW)]:
                conn.execute(stmt)
        as_of = clock()
        writer = _ChunkWriter(conn, versions.timeline.known_at(as_of), ranks, as_of, progress)
        if source == "store":
            if not store_url:
                raise TimelineError("rebuild --from store needs the store's URL (--store or TIMELINE_DB)")
            _from_store(store_url, writer, chunk_events, progress)
        else:
            if not (bootstrap and topic):
                raise TimelineError("rebuild --from topic needs --bootstrap and --topic")
            saved = _saved_offsets(conn, group, topic)
            _copy_topic(conn, bootstrap, topic, saved, progress)
            _from_copy(conn, writer, chunk_events)
        if before_swap:
            before_swap()
        swap_started = time.monotonic()
        as_of = clock()
        merged = _swap(conn, snapshot_seq, versions.timeline.known_at(as_of), entries, ranks, as_of, source)
        swap_seconds = time.monotonic() - swap_started
    except BaseException:
        try:
            for table in SWAPPED:
                conn.execute(f"DROP TABLE IF EXISTS {table}{NEW}")
        except psycopg.Error:
            pass
        raise
    finally:
        conn.close()
        versions.close()
    return RebuildResult(source, writer.customers, writer.events, merged, time.monotonic() - started, swap_seconds)


def _saved_offsets(conn: psycopg.Connection, group: str, topic: str) -> dict[int, int]:
    saved = checkpoints.saved_offsets(conn, PREFIX, group, topic)
    if not saved:
        raise TimelineError(
            f"group {group!r} has applied nothing of topic {topic!r} here: nothing to rebuild from the topic "
            "(rebuild --from store, or run the consumer)"
        )
    return {tp.partition: offset for tp, offset in saved.items()}


def chunks_of(counts: Sequence[tuple[str, int]], chunk_events: int) -> Iterator[list[str]]:
    """Customers (in the given order) grouped so that each group holds about ``chunk_events`` events."""
    chunk: list[str] = []
    size = 0
    for customer_id, events in counts:
        if chunk and size + events > chunk_events:
            yield chunk
            chunk, size = [], 0
        chunk.append(customer_id)
        size += events
    if chunk:
        yield chunk


class _ChunkWriter:
    """Evaluates one chunk of customers and writes their rows (and, from the store, their events) in one transaction."""

    def __init__(
        self,
        conn: psycopg.Connection,
        policy: PolicyTimeline,
        ranks: dict[str, int],
        as_of: dt.datetime,
        progress: Progress | None,
    ) -> None:
        self.conn, self.policy, self.ranks, self.as_of, self.progress = conn, policy, ranks, as_of, progress
        self.customers = 0
        self.events = 0
        self.total: int | None = None

    def write(self, histories: dict[str, list[RecordedEvent]], values: Sequence[tuple[Any, ...]] = ()) -> None:
        evaluations = [evaluate(c, h, self.policy, self.as_of) for c, h in sorted(histories.items()) if h]
        with self.conn.transaction(), self.conn.cursor() as cur:
            if values:
                with cur.copy(
                    f"COPY {PREFIX}_events{NEW} (event_id, customer_id, version, position, value) FROM STDIN"
                ) as copy:
                    for row in values:
                        copy.write_row(row)
            write_rows(cur, evaluations, self.ranks, NEW)
            copies.save_streams(cur, PREFIX, evaluations, NEW)
        self.customers += len(evaluations)
        self.events += sum(len(h) for h in histories.values())
        if self.progress:
            self.progress("computing states", self.customers, self.total)


def _from_store(store_url: str, writer: _ChunkWriter, chunk_events: int, progress: Progress | None) -> None:
    """Every customer's stream as of the head when the rebuild began, as the relay would publish it (PII as markers).

    Chunk by chunk of customers (sized from their heads' versions): the events are copied, the rows written, and
    both let go before the next chunk is read.
    """
    from timeline.application.keyring import KeyRing
    from timeline.store import open_store

    store = open_store(store_url, create=False)
    try:
        head = store.head_position()
        customers = store.customer_ids()
        heads = store.heads(customers)
        writer.total = len(customers)
        counts = [(c, heads[c][0] if c in heads else 1) for c in customers]
        del heads
        for chunk in chunks_of(counts, chunk_events):
            streams = store.read_streams(chunk)
            keys = KeyRing(store, None).keys(chunk)
            histories: dict[str, list[RecordedEvent]] = {}
            values: list[tuple[Any, ...]] = []
            for customer_id in chunk:
                history = histories[customer_id] = []
                erased = keys[customer_id].erased
                for row in streams.pop(customer_id):
                    if row.position > head:  # stored after the rebuild began: the swap merges what the consumer has
                        continue
                    value = stored_to_bytes(row, erased)
                    event = parse(value)
                    history.append(event)
                    values.append((event.event_id, event.customer_id, event.version, event.position, value))
            writer.write(histories, values)
            del streams, histories, values
    finally:
        store.close()


def _copy_topic(
    conn: psycopg.Connection, bootstrap: str, topic: str, ends: dict[int, int], progress: Progress | None
) -> None:
    """The topic from the beginning up to the offsets the consumer applied into the new copy, one poll at a time.

    Repeats are dropped by the copy's primary key (the first one read stays); poison is skipped.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        metrics_enabled=False,
    )
    try:
        partitions = [TopicPartition(topic, p) for p, end in sorted(ends.items()) if end > 0]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        starts = {tp: consumer.position(tp) for tp in partitions}
        total = sum(ends[tp.partition] - starts[tp] for tp in partitions)
        read = 0
        remaining = {tp for tp in partitions if consumer.position(tp) < ends[tp.partition]}
        idle_since = time.monotonic()
        while remaining:
            polled = consumer.poll(timeout_ms=500, max_records=20_000)
            if not polled and time.monotonic() - idle_since > 60:
                raise TimelineError(f"topic {topic} ends before the offsets the consumer applied: {ends}")
            batch: list[tuple[Any, ...]] = []
            for tp, records in polled.items():
                idle_since = time.monotonic()
                end = ends[tp.partition]
                for r in records:
                    if r.offset >= end:
                        break
                    read += 1
                    try:
                        event = parse(r.value) if r.value is not None else None
                    except NotACloudEvent:
                        event = None
                    if event is not None:
                        batch.append((event.event_id, event.customer_id, event.version, event.position, r.value))
                if consumer.position(tp) >= end or (records and records[-1].offset >= end - 1):
                    remaining.discard(tp)
                    consumer.pause(tp)
            _insert_copy(conn, batch)
            if progress:
                progress("reading the topic", read, total)
    finally:
        consumer.close()


def _insert_copy(conn: psycopg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    with conn.transaction():
        conn.execute(copies.INSERT_EVENTS.format(table=f"{PREFIX}_events{NEW}"), [list(c) for c in columns])


def _from_copy(conn: psycopg.Connection, writer: _ChunkWriter, chunk_events: int) -> None:
    """Every customer of the new copy of the events, chunk by chunk of customers."""
    counts = conn.execute(f"SELECT customer_id, count(*) FROM {PREFIX}_events{NEW} GROUP BY 1 ORDER BY 1").fetchall()
    writer.total = len(counts)
    for chunk in chunks_of(counts, chunk_events):
        with conn.cursor() as cur:
            histories = copies.read_histories(cur, PREFIX, chunk, NEW)
        writer.write(histories)
        del histories


def _swap(
    conn: psycopg.Connection,
    snapshot_seq: int,
    policy: PolicyTimeline,
    entries: int,
    ranks: dict[str, int],
    as_of: dt.datetime,
    source: str,
) -> int:
    """Under the exclusive lock: merge what the consumer applied since the snapshot, rename, drop the old; record
    how many published policy versions the rows were folded under."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (database.SWAP_LOCK,))
        cur.execute(
            f"INSERT INTO {PREFIX}_events{NEW} (event_id, customer_id, version, position, value)"
            f" SELECT event_id, customer_id, version, position, value FROM {PREFIX}_events WHERE seq > %s"
            " ON CONFLICT (event_id) DO NOTHING",
            (snapshot_seq,),
        )
        cur.execute(f"SELECT DISTINCT customer_id FROM {PREFIX}_events WHERE seq > %s", (snapshot_seq,))
        late = [r[0] for r in cur.fetchall()]
        if late:
            histories = copies.read_histories(cur, PREFIX, late, NEW)
            evaluations = [evaluate(c, h, policy, as_of) for c, h in sorted(histories.items()) if h]
            write_rows(cur, evaluations, ranks, NEW)
            copies.save_streams(cur, PREFIX, evaluations, NEW)
        for table in SWAPPED:
            cur.execute(f"ALTER TABLE {table} RENAME TO {table}{OLD}")
            cur.execute(f"ALTER TABLE {table}{NEW} RENAME TO {table}")
        for table in SWAPPED:
            cur.execute(f"DROP TABLE {table}{OLD}")
        for table in SWAPPED:  # the new tables' indexes take the usual names (the old ones are gone)
            cur.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", (table,)
            )
            for (index,) in cur.fetchall():
                if index.startswith(table + NEW):
                    cur.execute(f"ALTER INDEX {index} RENAME TO {table}{index[len(table) + len(NEW) :]}")
        cur.execute(
            f"UPDATE {PREFIX}_meta SET generation = generation + 1, rebuilt_at = now(), rebuilt_from = %s", (source,)
        )
        cur.execute(f"UPDATE {PREFIX}_policy SET entries = %s", (entries,))
    return len(late)
