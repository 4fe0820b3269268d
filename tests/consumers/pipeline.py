"""What the read-model tests share: a PostgreSQL store, ingest, one relay pass, a consumer run, comparisons."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import KEK
from tests.kafka import Broker
from timeline.application.states import StateReader
from timeline.consumers.readmodels import summary_queries
from timeline.consumers.readmodels.runner import ProjectingConsumer
from timeline.consumers.readmodels.summary import SummaryConsumer
from timeline.consumers.relay.relay import Relay
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store

TIMELINE = str(Path(sys.executable).with_name("timeline"))
ROOT = Path(__file__).resolve().parents[2]
INGESTED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""The ingest clock: every event is recorded at this instant."""
NOW = dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
"""'Now' for the consumers and for ``state --all``: just after the ingest."""
COMPARED = (
    "customer_id",
    "tier",
    "lifecycle",
    "points",
    "aum",
    "branch_id",
    "relationship_manager",
    "last_activity_at",
    "erased",
    "next_change_at",
)


@contextmanager
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = Engine(open_store(pg_url), KeyWrapper(KEK))
    try:
        yield engine
    finally:
        engine.close()


def ingest(engine: Engine, events: list[dict[str, Any]], at: dt.datetime = INGESTED_AT) -> None:
    outcomes = list(engine.ingestor(clock=lambda: at, batch_size=2000).ingest(list(enumerate(events, 1))))
    rejected = [(o.line, o.error) for o in outcomes if o.status == "rejected"]
    assert not rejected, rejected[:3]


def relay_once(engine: Engine, broker: Broker, topic: str, **kw: Any) -> int:
    kw.setdefault("batch_size", 1000)
    relay = Relay(engine.store, broker.bootstrap, topic, **kw)
    try:
        return relay.run(stop_when_caught_up=True).published
    finally:
        relay.close()


def consume(
    pg_url: str,
    broker: Broker,
    topic: str,
    now: dt.datetime = NOW,
    cls: type[ProjectingConsumer] = SummaryConsumer,
    **kw: Any,
) -> ProjectingConsumer:
    """Run a consumer until it has caught up with every partition; return it (closed)."""
    kw.setdefault("tick_interval", 0)
    kw.setdefault("group", group_of(topic, cls.prefix))
    consumer = cls(pg_url, broker.bootstrap, topic, clock=lambda: now, **kw)
    try:
        consumer.run(until_caught_up=True)
    finally:
        consumer.close()
    return consumer


def group_of(topic: str, prefix: str = "summary") -> str:
    """A group of the test's own: a member killed in another test must not hold up this group's rebalance."""
    return f"{prefix}-{topic}"


def expected(engine: Engine, now: dt.datetime = NOW) -> dict[str, dict[str, Any]]:
    """``timeline state --all`` as of ``now``: the compared fields of every customer."""
    reader = StateReader(engine.store, engine.policy)
    return {s.customer_id: {k: s.to_json()[k] for k in COMPARED} for s in reader.all_states(now, now)}


def read_model(pg_url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(pg_url) as conn:
        rows = summary_queries.list_customers(conn)
    return {r.customer_id: {k: r.to_json()[k] for k in COMPARED} for r in rows}


def assert_read_model_exact(engine: Engine, pg_url: str, now: dt.datetime = NOW) -> dict[str, dict[str, Any]]:
    want, got = expected(engine, now), read_model(pg_url)
    assert set(got) == set(want), (sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5])
    wrong = {c: (got[c], want[c]) for c in want if got[c] != want[c]}
    assert not wrong, list(wrong.items())[:3]
    return got


def scalar(pg_url: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(sql, args).fetchone()[0]


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def timeline(*args: str, timeout: float = 90, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TIMELINE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
