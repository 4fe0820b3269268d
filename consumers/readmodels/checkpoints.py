"""Where a consumer group has got to, saved with its view: next offsets, dead letters, the rebuild generation.

``{prefix}_offsets`` holds the next Kafka offset per group, topic and
partition, written in the same transaction as the view (these, not Kafka's
committed offsets, are the ones that count); ``{prefix}_dead_letters`` the
messages sent to the dead-letter topic; ``{prefix}_meta`` a generation number
a rebuild bumps, so a running consumer drops its cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from kafka import TopicPartition

from timeline.consumers.readmodels.database import SWAP_LOCK


def checkpoint_ddl(prefix: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {prefix}_offsets ("
        ' "group" text NOT NULL, topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,'
        " max_position bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now(),"
        ' PRIMARY KEY ("group", topic, partition))',
        f"CREATE TABLE IF NOT EXISTS {prefix}_dead_letters ("
        ' "group" text NOT NULL, topic text NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL,'
        " reason text NOT NULL, dead_letter_topic text NOT NULL, at timestamptz NOT NULL DEFAULT now(),"
        ' PRIMARY KEY ("group", topic, partition, "offset"))',
        f"CREATE TABLE IF NOT EXISTS {prefix}_meta (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
        " generation bigint NOT NULL DEFAULT 0, rebuilt_at timestamptz, rebuilt_from text)",
        f"INSERT INTO {prefix}_meta (one) VALUES (true) ON CONFLICT DO NOTHING",
    ]


def saved_offsets(conn: psycopg.Connection, prefix: str, group: str, topic: str) -> dict[TopicPartition, int]:
    """The next offset of each partition the group has applied (a partition it never applied is absent)."""
    rows = conn.execute(
        f'SELECT partition, next_offset FROM {prefix}_offsets WHERE "group" = %s AND topic = %s', (group, topic)
    ).fetchall()
    return {TopicPartition(topic, p): o for p, o in rows}


def save_offsets(
    cur: psycopg.Cursor,
    prefix: str,
    group: str,
    next_offsets: dict[TopicPartition, int],
    max_position: dict[TopicPartition, int],
) -> None:
    cur.executemany(
        f'INSERT INTO {prefix}_offsets ("group", topic, partition, next_offset, max_position)'
        ' VALUES (%s, %s, %s, %s, %s) ON CONFLICT ("group", topic, partition) DO UPDATE SET'
        f" next_offset = excluded.next_offset, max_position = greatest({prefix}_offsets.max_position,"
        " excluded.max_position), updated_at = now()",
        [(group, tp.topic, tp.partition, o, max_position.get(tp, 0)) for tp, o in sorted(next_offsets.items())],
    )


def record_dead_letters(
    cur: psycopg.Cursor, prefix: str, group: str, dead_letter_topic: str, poison: Sequence[tuple[object, str]]
) -> None:
    """Record each (Kafka record, reason) sent to the dead-letter topic."""
    if not poison:
        return
    cur.executemany(
        f"INSERT INTO {prefix}_dead_letters"
        ' ("group", topic, partition, "offset", reason, dead_letter_topic)'
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [(group, r.topic, r.partition, r.offset, why, dead_letter_topic) for r, why in poison],  # type: ignore[attr-defined]
    )


def lock_shared(conn: psycopg.Connection, prefix: str) -> int:
    """Keep a rebuild's swap out of this transaction; the generation (a rebuild that swapped bumped it)."""
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s, 0)", (SWAP_LOCK,))
    # A statement of its own: its snapshot is taken after the lock is granted, so it sees a swap just committed.
    return conn.execute(f"SELECT generation FROM {prefix}_meta").fetchone()[0]
