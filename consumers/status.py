"""``timeline status``: how far each stage of the pipeline has got.

- the store's head position (the last event stored);
- each relay's saved position (``timeline_relay_positions``) and how many
  positions it is behind the head;
- every consumer group on the broker: per partition of every topic it reads,
  the start and end of the log, the offset the group committed to Kafka and
  the lag; for the groups of this package, also the offset saved in the
  read-model database (the one that counts) and the lag from it. A partition
  the group has no offset for yet counts from its start (the log's first
  offset, not 0 if the log was truncated): the lag is what is really unread;
- the read model: rows, rows per tier and stage, and rows whose next change
  has come but no tick has applied yet.

Each part that cannot be reached (store, read model, broker) reports an
error instead of its figures (the CLI then exits 1); the broker gets
``KAFKA_TIMEOUT`` seconds per request and for its bootstrap, so a paused
broker is reported within about that long. A store that does not exist is an
error ("no timeline store at URL"), never a head of 0, and is not created.

End offsets: Tansu 0.6 answers ListOffsets(latest) with the start of the last
record batch, not the high watermark, so the end is taken from a fetch at
that offset (the fetch response carries the true high watermark); on Apache
Kafka both agree.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from typing import Any

import psycopg
from kafka import TopicPartition

from timeline.consumers.backoff import describe, describe_kafka
from timeline.consumers.readmodels import database, summary_queries, summary_tables
from timeline.consumers.readmodels.registry import READ_MODELS
from timeline.domain.errors import NoStore, TimelineError
from timeline.domain.recorded import iso
from timeline.store import StoreUrl, open_store

KAFKA_TIMEOUT = 4.0
"""Seconds for the broker's bootstrap and for each request (the whole report stays under 10 s when it is away)."""


def store_status(store_url: str) -> dict[str, Any]:
    """The head position and every relay's position, from the store's database."""
    store = open_store(store_url, create=False)
    try:
        head = store.head_position()
    finally:
        store.close()
    relays = []
    for name, topic, position, updated_at in _relay_rows(store_url):
        relays.append(
            {
                "name": name,
                "topic": topic,
                "position": position,
                "behind": max(head - position, 0),
                "updated_at": updated_at if isinstance(updated_at, str) or updated_at is None else iso(updated_at),
            }
        )
    return {"head": head, "relays": relays}


def _relay_rows(store_url: str) -> list[tuple[Any, ...]]:
    sql = "SELECT name, topic, position, updated_at FROM timeline_relay_positions ORDER BY name, topic"
    url = StoreUrl.parse(store_url)
    if url.is_postgres:
        with psycopg.connect(store_url, connect_timeout=10) as conn:
            if not database.table_exists(conn, "timeline_relay_positions"):
                return []
            return conn.execute(sql).fetchall()
    conn = sqlite3.connect(url.sqlite_path)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no relay has run
        return []
    finally:
        conn.close()


def log_bounds(
    bootstrap: str, partitions: list[TopicPartition], timeout: float = KAFKA_TIMEOUT
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first offset and the true end (high watermark) of each partition."""
    from kafka import KafkaConsumer

    if not partitions:
        return {}, {}
    timeout_ms = int(timeout * 1000)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        metrics_enabled=False,
    )
    try:
        starts = consumer.beginning_offsets(partitions, timeout_ms=timeout_ms)
        reported = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, reported[tp])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.highwater(tp) is None for tp in partitions):
            consumer.poll(timeout_ms=100, max_records=1000)
        return starts, {tp: max(reported[tp], consumer.highwater(tp) or 0) for tp in partitions}
    finally:
        consumer.close()


def kafka_status(
    bootstrap: str, topics: list[str] | None = None, extra_topics: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Every consumer group's committed offsets, and the bounds of every partition of the topics involved.

    ``extra_topics``: topics the read model has saved offsets for (their partitions are wanted too).
    """
    from kafka.admin import KafkaAdminClient

    timeout_ms = int(KAFKA_TIMEOUT * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="timeline-status",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        groups = sorted(_group_id(g) for g in admin.list_groups())
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in groups:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
            committed[group] = {
                tp: meta.offset
                for tp, meta in offsets.items()
                if meta.offset is not None and meta.offset >= 0 and (topics is None or tp.topic in topics)
            }
        wanted = set(topics or ()) | {tp.topic for offsets in committed.values() for tp in offsets}
        wanted |= {t for t in extra_topics if topics is None or t in topics}
        known = set(admin.list_topics())
        partitions: list[TopicPartition] = []
        for topic in sorted(wanted & known):
            described = admin.describe_topics([topic])
            for t in described:
                partitions.extend(TopicPartition(topic, p["partition_index"]) for p in t.get("partitions", []))
    finally:
        admin.close()
    starts, ends = log_bounds(bootstrap, partitions)
    return {
        "topics": {
            topic: {
                "partitions": len([tp for tp in ends if tp.topic == topic]),
                "messages": sum(o - starts.get(tp, 0) for tp, o in ends.items() if tp.topic == topic),
            }
            for topic in sorted({tp.topic for tp in ends})
        },
        "starts": starts,
        "ends": ends,
        "committed": committed,
    }


def _group_id(group: Any) -> str:
    if isinstance(group, tuple):
        return group[0]
    if isinstance(group, dict):
        return group.get("group_id") or group.get("group")
    return getattr(group, "group_id", None) or str(group)


def read_model_status(db_url: str, now: dt.datetime) -> dict[str, Any]:
    """Offsets saved with the views, dead letters and the summary's row counts."""
    out: dict[str, Any] = {"saved": {}, "dead_letters": {}, "summary": None}
    with database.connect(db_url) as conn:
        for prefix in (m.prefix for m in READ_MODELS.values()):
            if database.table_exists(conn, f"{prefix}_offsets"):
                for group, topic, partition, offset, position, updated in conn.execute(
                    f'SELECT "group", topic, partition, next_offset, max_position, updated_at FROM {prefix}_offsets'
                ).fetchall():
                    out["saved"].setdefault(group, {})[TopicPartition(topic, partition)] = (
                        offset,
                        position,
                        iso(updated),
                        prefix,
                    )
            if database.table_exists(conn, f"{prefix}_dead_letters"):
                for group, count in conn.execute(
                    f'SELECT "group", count(*) FROM {prefix}_dead_letters GROUP BY 1'
                ).fetchall():
                    out["dead_letters"][group] = count
        if database.table_exists(conn, summary_tables.SUMMARY_TABLE):
            out["summary"] = summary_queries.counts(conn, now)
    return out


def status(
    store_url: str | None,
    db_url: str | None,
    bootstrap: str | None,
    topics: list[str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The whole picture as one JSON-able dict; each part reports its own error instead of failing the rest.

    ``errors`` names each part that could not be read (``store``, ``read_model``, ``kafka``) with why;
    ``missing_store`` is true when the store's URL holds no store.
    """
    now = now or dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {"at": iso(now)}
    errors: dict[str, str] = {}
    result["missing_store"] = False
    try:
        result["store"] = store_status(store_url) if store_url else None
    except Exception as exc:  # noqa: BLE001 - status reports what it cannot reach
        errors["store"] = _error(exc)
        result["store"] = {"error": errors["store"]}
        result["missing_store"] = isinstance(exc, NoStore)
    read: dict[str, Any] = {"saved": {}, "dead_letters": {}, "summary": None}
    if db_url and database.is_postgres(db_url):
        try:
            read = read_model_status(db_url, now)
        except Exception as exc:  # noqa: BLE001
            errors["read_model"] = read["error"] = _error(exc)
    result["read_model"] = {"summary": read["summary"], **({"error": read["error"]} if "error" in read else {})}
    kafka: dict[str, Any] = {"starts": {}, "ends": {}, "committed": {}, "topics": {}}
    if bootstrap:
        saved_topics = {tp.topic for saved in read["saved"].values() for tp in saved}
        try:
            kafka = kafka_status(bootstrap, topics, saved_topics)
        except Exception as exc:  # noqa: BLE001
            errors["kafka"] = kafka["error"] = describe_kafka(exc, bootstrap, KAFKA_TIMEOUT).splitlines()[0]
    result["topics"] = kafka["topics"]
    if "error" in kafka:
        result["kafka_error"] = kafka["error"]
    groups = []
    for group in sorted(set(kafka["committed"]) | set(read["saved"])):
        entry = _group(group, kafka, read, topics)
        if entry is not None:
            groups.append(entry)
    result["groups"] = groups
    result["errors"] = errors
    return result


def _group(group: str, kafka: dict[str, Any], read: dict[str, Any], topics: list[str] | None) -> dict[str, Any] | None:
    """One group over every partition of each topic it reads (None: nothing on the wanted topics)."""
    committed: dict[TopicPartition, int] = kafka["committed"].get(group, {})
    saved: dict[TopicPartition, tuple[Any, ...]] = read["saved"].get(group, {})
    starts: dict[TopicPartition, int] = kafka["starts"]
    ends: dict[TopicPartition, int] = kafka["ends"]
    reads = {tp.topic for tp in (*committed, *saved) if topics is None or tp.topic in topics}
    known = {tp for tp in (*committed, *saved) if tp.topic in reads}
    partitions = sorted(known | {tp for tp in ends if tp.topic in reads})
    if not partitions:
        return None
    kind = next((v[3] for v in saved.values()), None)
    parts = []
    for tp in partitions:
        start, end = starts.get(tp), ends.get(tp)
        part: dict[str, Any] = {"topic": tp.topic, "partition": tp.partition, "start": start, "end": end}
        part["committed"] = committed.get(tp)
        part["lag"] = _lag(committed.get(tp), start, end)
        if kind is not None:  # the read model's offsets are the ones that count
            offset, position, updated, _prefix = saved.get(tp, (None, None, None, None))
            part["saved"] = offset
            part["saved_lag"] = _lag(offset, start, end)
            part["max_position"] = position
            part["saved_at"] = updated
        parts.append(part)
    lags = [p["saved_lag"] if kind is not None else p["lag"] for p in parts]
    return {
        "group": group,
        "kind": kind,
        "lag": None if any(lag is None for lag in lags) else sum(lags),
        "dead_letters": read["dead_letters"].get(group, 0),
        "partitions": parts,
    }


def _lag(offset: int | None, start: int | None, end: int | None) -> int | None:
    """Messages not yet read: from ``offset``, or from the partition's start if the group has none there."""
    if end is None:
        return None
    if start is None:
        return None if offset is None else max(end - offset, 0)
    return max(end - max(offset if offset is not None else start, start), 0)


def _error(exc: BaseException) -> str:
    """One line saying why a part could not be read."""
    if isinstance(exc, TimelineError):
        return str(exc)
    return describe(exc).splitlines()[0]
