"""What the benchmarks share: a fresh PostgreSQL database, a generated branch history, an ingest."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from timeline.application.jsonl import read_lines
from timeline.application.process import tune_gc_for_bulk_work
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store
from timeline.synthetic.generate import generate_branch, write_jsonl

ADMIN = os.environ.get("TIMELINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KEK = bytes(range(32))
END = dt.date(2026, 11, 1)
OUT = Path(__file__).parent / "out"

tune_gc_for_bulk_work()


def fresh_db() -> tuple[str, Callable[[], None]]:
    """A new database on the benchmark server, and how to drop it."""
    name = f"tl_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def generated_history(customers: int, years: float, seed: int, end: dt.date = END) -> Path:
    """A generated branch as JSON Lines, cached under bench/out."""
    path = OUT / f"branch-{customers}c-{years:g}y-{seed}s-{end}.jsonl"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            write_jsonl(generate_branch(customers, years, seed, end), fh)
        tmp.rename(path)
    return path


def ingest_file(url: str, path: Path, batch_size: int = 2000) -> int:
    """Ingest a file with every check on; return how many events were stored."""
    engine = Engine(open_store(url), KeyWrapper(KEK))
    try:
        with path.open("rb") as fh:
            return sum(o.status == "accepted" for o in engine.ingestor(batch_size=batch_size).ingest(read_lines(fh)))
    finally:
        engine.close()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A fresh topic, so each run starts from an empty log."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
