"""``timeline status``: how far each stage of the pipeline has got.

- the store's head position (the last event stored);
- each relay's saved position (``timeline_relay_positions``) and how many
  positions it is behind the head;
- every consumer group on the broker: per partition, the end of the log, the
  offset the group committed to Kafka and the lag; for the groups of this
  package, also the offset saved in the read-model database (the one that
  counts) and the lag from it;
- the read model: rows, rows per tier and stage, and rows whose next change
  has come but no tick has applied yet.

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

from consumers import readmodel
from timeline.recorded import iso

CONSUMER_PREFIXES = (readmodel.SUMMARY, readmodel.ALERTS)


def store_status(store_url: str) -> dict[str, Any]:
    """The head position and every relay's position, from the store's database."""
    from timeline.store import open_store

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
    if readmodel.is_postgres(store_url):
        with psycopg.connect(store_url, connect_timeout=10) as conn:
            if not readmodel.table_exists(conn, "timeline_relay_positions"):
                return []
            return conn.execute(sql).fetchall()
    conn = sqlite3.connect(store_url[len("sqlite:///") :])
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no relay has run
        return []
    finally:
        conn.close()


def end_offsets(bootstrap: str, partitions: list[TopicPartition], timeout: float = 5.0) -> dict[TopicPartition, int]:
    """The true end (high watermark) of each partition."""
    from kafka import KafkaConsumer

    if not partitions:
        return {}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        request_timeout_ms=int(timeout * 1000) + 1000,
        metrics_enabled=False,
    )
    try:
        reported = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, reported[tp])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.highwater(tp) is None for tp in partitions):
            consumer.poll(timeout_ms=100, max_records=1000)
        return {tp: max(reported[tp], consumer.highwater(tp) or 0) for tp in partitions}
    finally:
        consumer.close()


def kafka_status(bootstrap: str, topics: list[str] | None = None) -> dict[str, Any]:
    """Every consumer group's committed offsets and lag (optionally only on these topics)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="timeline-status", request_timeout_ms=10_000)
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
        known = set(admin.list_topics())
        partitions: list[TopicPartition] = []
        for topic in sorted(wanted & known):
            described = admin.describe_topics([topic])
            for t in described:
                partitions.extend(TopicPartition(topic, p["partition_index"]) for p in t.get("partitions", []))
    finally:
        admin.close()
    ends = end_offsets(bootstrap, partitions)
    return {
        "topics": {
            topic: {
                "partitions": len([tp for tp in ends if tp.topic == topic]),
                "messages": sum(o for tp, o in ends.items() if tp.topic == topic),
            }
            for topic in sorted({tp.topic for tp in ends})
        },
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
    with readmodel.connect(db_url) as conn:
        for prefix in CONSUMER_PREFIXES:
            if readmodel.table_exists(conn, f"{prefix}_offsets"):
                for group, topic, partition, offset, position, updated in conn.execute(
                    f'SELECT "group", topic, partition, next_offset, max_position, updated_at FROM {prefix}_offsets'
                ).fetchall():
                    out["saved"].setdefault(group, {})[TopicPartition(topic, partition)] = (
                        offset,
                        position,
                        iso(updated),
                        prefix,
                    )
            if readmodel.table_exists(conn, f"{prefix}_dead_letters"):
                for group, count in conn.execute(
                    f'SELECT "group", count(*) FROM {prefix}_dead_letters GROUP BY 1'
                ).fetchall():
                    out["dead_letters"][group] = count
        if readmodel.table_exists(conn, readmodel.SUMMARY_TABLE):
            out["summary"] = readmodel.counts(conn, now)
    return out


def status(
    store_url: str | None,
    db_url: str | None,
    bootstrap: str | None,
    topics: list[str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The whole picture as one JSON-able dict; each part reports its own error instead of failing the rest."""
    now = now or dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {"at": iso(now)}
    try:
        result["store"] = store_status(store_url) if store_url else None
    except Exception as exc:  # noqa: BLE001 - status reports what it cannot reach
        result["store"] = {"error": f"{type(exc).__name__}: {exc}"}
    read: dict[str, Any] = {"saved": {}, "dead_letters": {}, "summary": None}
    if db_url and readmodel.is_postgres(db_url):
        try:
            read = read_model_status(db_url, now)
        except Exception as exc:  # noqa: BLE001
            read["error"] = f"{type(exc).__name__}: {exc}"
    result["read_model"] = {"summary": read["summary"], **({"error": read["error"]} if "error" in read else {})}
    kafka: dict[str, Any] = {"ends": {}, "committed": {}, "topics": {}}
    if bootstrap:
        try:
            kafka = kafka_status(bootstrap, topics)
        except Exception as exc:  # noqa: BLE001
            kafka["error"] = f"{type(exc).__name__}: {exc}"
    result["topics"] = kafka["topics"]
    if "error" in kafka:
        result["kafka_error"] = kafka["error"]
    groups = []
    for group in sorted(set(kafka["committed"]) | set(read["saved"])):
        committed = kafka["committed"].get(group, {})
        saved = read["saved"].get(group, {})
        parts = []
        for tp in sorted(set(committed) | set(saved)):
            if topics is not None and tp.topic not in topics:
                continue
            end = kafka["ends"].get(tp)
            part: dict[str, Any] = {"topic": tp.topic, "partition": tp.partition, "end": end}
            part["committed"] = committed.get(tp)
            part["lag"] = end - committed[tp] if end is not None and tp in committed else None
            if tp in saved:
                offset, position, updated, _prefix = saved[tp]
                part["saved"] = offset
                part["saved_lag"] = end - offset if end is not None else None
                part["max_position"] = position
                part["saved_at"] = updated
            parts.append(part)
        if not parts:
            continue
        lags = [p.get("saved_lag", p["lag"]) for p in parts]
        groups.append(
            {
                "group": group,
                "kind": next((v[3] for v in saved.values()), None),
                "lag": sum(lag for lag in lags if lag is not None) if any(lag is not None for lag in lags) else None,
                "dead_letters": read["dead_letters"].get(group, 0),
                "partitions": parts,
            }
        )
    result["groups"] = groups
    return result
