"""The Kafka relay on a real broker (Tansu) and real databases.

Every test publishes to a topic of its own on the session's broker and reads
it back without a consumer group (assign + seek to beginning).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factories import deposit, erased, event, registered, visit, withdrawal
from tests.kafka import Broker, read_topic
from timeline.application.keyring import KeyRing
from timeline.consumers.cloudevents import CONTENT_TYPE, parse
from timeline.consumers.relay.positions import PositionStore, RelayError
from timeline.consumers.relay.relay import Relay
from timeline.domain.recorded import RecordedEvent
from timeline.engine import Engine

TIMELINE = str(Path(sys.executable).with_name("timeline"))
ROOT = Path(__file__).resolve().parents[2]

PEOPLE = {
    "C1": {"name": "欧阳娜娜", "birth_date": "1961-07-19", "phone": "+86 139 1234 5678"},
    "C2": {"name": "Zhang Weiqiang", "birth_date": "1974-03-08", "phone": "021-6543-2109"},
    "C3": {"name": "李秀英", "birth_date": "1958-11-30", "phone": "+86 135 7777 0420"},
    "C4": {"name": "Chen Jing", "birth_date": "1990-02-14", "phone": "+86 188 2468 1357"},
}


def ingest(engine: Engine, clock, events: list[dict[str, Any]]) -> None:
    outcomes = list(engine.ingestor(clock=clock, batch_size=2000).ingest(list(enumerate(events, 1))))
    rejected = [o for o in outcomes if o.status == "rejected"]
    assert not rejected, rejected[:3]


def small_branch() -> list[dict[str, Any]]:
    """Four customers, interleaved; C3 is erased (its PII must read as erased)."""
    events = [registered(c, at="2025-01-01T09:00:00+08:00", **PEOPLE[c]) for c in PEOPLE]
    for day in range(1, 8):
        for c in ("C1", "C2", "C4"):
            events.append(deposit(c, at=f"2025-02-{day:02d}T10:00:00+08:00", amount=f"{day}00.00"))
        events.append(visit("C3", at=f"2025-02-{day:02d}T11:00:00+08:00", notes=f"visit {day}"))
    events.append(withdrawal("C1", at="2025-03-01T10:00:00+08:00", amount="50.00"))
    events.append(
        event(
            "customer.profile_updated",
            "C2",
            "2025-03-02T10:00:00+08:00",
            {"phone": "+86 186 5555 0147"},
            source="crm",
            actor="RM007",
        )
    )
    events.append(erased("C3", at="2025-04-01T09:00:00+08:00"))
    return events


def many(customers: int, per_customer: int, prefix: str = "K") -> list[dict[str, Any]]:
    """Registrations, then rounds of deposits and visits across every customer (interleaved)."""
    ids = [f"{prefix}{i:05d}" for i in range(customers)]
    events = [registered(c, at="2024-01-01T09:00:00+08:00", name=f"Person {c}") for c in ids]
    for n in range(per_customer):
        day = f"2024-{1 + n // 28 % 12:02d}-{1 + n % 28:02d}"
        for i, c in enumerate(ids):
            events.append(
                deposit(c, at=f"{day}T10:00:00+08:00", amount="100.00")
                if (n + i) % 2
                else visit(c, at=f"{day}T10:00:00+08:00")
            )
    return events


def stored(engine: Engine) -> list[RecordedEvent]:
    return KeyRing(engine.store, None).decode(engine.store.read_log(0, 10_000_000))


def make_relay(engine: Engine, broker: Broker, topic: str, **kw: Any) -> Relay:
    kw.setdefault("batch_size", 100)
    return Relay(engine.store, broker.bootstrap, topic, **kw)


def check_order_per_customer(records: list[Any]) -> None:
    """One partition per customer, and each customer's first deliveries in stream order."""
    partition_of: dict[bytes, int] = {}
    seen: set[str] = set()
    last_version: dict[str, int] = collections.defaultdict(int)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert partition_of.setdefault(r.key, r.partition) == r.partition, f"{r.key} on two partitions"
        e = parse(r.value)
        if str(e.event_id) in seen:
            continue
        seen.add(str(e.event_id))
        assert e.version == last_version[e.customer_id] + 1, f"{e.customer_id}: v{e.version} after v{last_version}"
        last_version[e.customer_id] = e.version


def positions_of(records: list[Any]) -> list[int]:
    return [parse(r.value).position for r in records]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(60)
def test_every_event_arrives_once_in_order_with_its_envelope_and_no_pii(engine, clock, kafka_broker, topic):
    ingest(engine, clock, small_branch())
    relay = make_relay(engine, kafka_broker, topic, batch_size=7)
    try:
        stats = relay.run(stop_when_caught_up=True)
    finally:
        relay.close()
    events = stored(engine)
    assert stats.published == len(events) and stats.failures == 0
    assert stats.position == engine.store.head_position()
    assert stats.idempotent is True  # Tansu answers InitProducerId

    records = read_topic(kafka_broker.bootstrap, topic)
    assert sorted(positions_of(records)) == [e.position for e in events]  # all, once
    assert len({r.partition for r in records}) > 1  # four customers over three partitions
    check_order_per_customer(records)

    by_position = {e.position: e for e in events}
    for r in records:
        assert dict(r.headers)["content-type"] == CONTENT_TYPE.encode()
        ce = json.loads(r.value)
        e = by_position[ce["position"]]
        assert r.key == e.customer_id.encode()
        assert parse(r.value) == e
        assert ce["id"] == str(e.event_id) and ce["subject"] == e.customer_id and ce["type"] == e.type
        assert ce["dataschema"].endswith(f"{e.type}.v1.json")
    body = b"\n".join(r.value + (r.key or b"") for r in records)
    for person in PEOPLE.values():
        for value in person.values():
            assert value.encode() not in body and json.dumps(value).encode() not in body
    assert b"+86 186 5555 0147" not in body

    registrations = {
        parse(r.value).customer_id: json.loads(r.value)["data"]
        for r in records
        if parse(r.value).type == "customer.registered"
    }
    assert registrations["C1"]["name"] == {"$encrypted": True}
    assert registrations["C3"]["name"] == {"$erased": True}
    assert registrations["C1"]["branch_id"] == "BR001"


@pytest.mark.timeout(60)
def test_a_restart_resumes_after_the_saved_position(pg_url, clock, kafka_broker, topic):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(pg_url), KeyWrapper(KEK))
    try:
        ingest(engine, clock, many(20, 5))
        first = make_relay(engine, kafka_broker, topic)
        try:
            s1 = first.run(stop_when_caught_up=True)
        finally:
            first.close()
        head1 = engine.store.head_position()
        assert s1.position == head1 and s1.published == 120

        ingest(engine, clock, many(10, 3, prefix="L"))
        second = make_relay(engine, kafka_broker, topic)
        try:
            s2 = second.run(stop_when_caught_up=True)
            s3 = second.run(stop_when_caught_up=True)
        finally:
            second.close()
        assert s2.start_position == head1 and s2.published == 40
        assert s3.published == 0 and s3.position == engine.store.head_position()

        records = read_topic(kafka_broker.bootstrap, topic)
        assert sorted(positions_of(records)) == [e.position for e in stored(engine)]  # nothing twice
        check_order_per_customer(records)
    finally:
        engine.close()


CRASHING_RELAY = """
import sys, time
from pathlib import Path
from timeline.consumers.relay.relay import Relay
from timeline.store import open_store

url, bootstrap, topic, batch, crash_at, marker = sys.argv[1:7]

class CrashingRelay(Relay):
    def _save(self, position):
        if self.stats.batches + 1 == int(crash_at):  # this batch is acknowledged; hang before saving it
            Path(marker).write_text(str(self.stats.position))
            time.sleep(600)
        super()._save(position)

CrashingRelay(open_store(url), bootstrap, topic, batch_size=int(batch)).run(stop_when_caught_up=True)
"""


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def _relay_once(db_url: str, broker: Broker, topic: str, batch: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            TIMELINE,
            "relay",
            "--db",
            db_url,
            "--bootstrap",
            broker.bootstrap,
            "--topic",
            topic,
            "--batch-size",
            str(batch),
            "--once",
            "--json",
            "--timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(90)
def test_killed_after_the_broker_acknowledged_but_before_saving_republishes_exactly_that_batch(
    pg_url, clock, kafka_broker, topic, tmp_path
):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(pg_url), KeyWrapper(KEK))
    try:
        ingest(engine, clock, many(30, 10))
        marker = tmp_path / "crashed"
        crashing = subprocess.Popen(
            [sys.executable, "-c", CRASHING_RELAY, pg_url, kafka_broker.bootstrap, topic, "40", "3", str(marker)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: marker.exists() or crashing.poll() is not None, 60, "the relay to reach batch 3")
            assert marker.exists(), crashing.stderr.read().decode()[-3000:] if crashing.stderr else ""
        finally:
            _kill(crashing)
        saved = int(marker.read_text())
        unacked = [r.position for r in engine.store.read_log(saved, 40)]
        positions = PositionStore(pg_url, lock=False)
        assert positions.load("default", topic) == saved
        positions.close()

        summary = _relay_once(pg_url, kafka_broker, topic, 40)
        assert summary["start_position"] == saved and summary["position"] == engine.store.head_position()

        records = read_topic(kafka_broker.bootstrap, topic)
        counts = collections.Counter(positions_of(records))
        assert set(counts) == {e.position for e in stored(engine)}  # every event arrived
        assert sorted(p for p, n in counts.items() if n > 1) == unacked  # that batch, and only it, twice
        assert max(counts.values()) == 2
        check_order_per_customer(records)
    finally:
        engine.close()


@pytest.mark.timeout(90)
def test_sigkill_mid_run_then_restart_loses_nothing_and_repeats_only_the_unacknowledged_batch(
    pg_url, clock, kafka_broker, topic
):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(pg_url), KeyWrapper(KEK))
    positions = PositionStore(pg_url, lock=False)
    batch = 50
    try:
        ingest(engine, clock, many(100, 40))
        head = engine.store.head_position()
        relay = subprocess.Popen(
            [
                TIMELINE,
                "relay",
                "--db",
                pg_url,
                "--bootstrap",
                kafka_broker.bootstrap,
                "--topic",
                topic,
                "--batch-size",
                str(batch),
                "--timeout",
                "10",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Let a few batches through, then kill it wherever it is: most of the time is spent sending.
            wait_for(
                lambda: positions.load("default", topic) >= 1000 or relay.poll() is not None,
                60,
                "the relay to publish 1000 events",
            )
        finally:
            _kill(relay)
        saved = positions.load("default", topic)
        assert saved < head, "the relay finished before it could be killed"
        unacked = {r.position for r in engine.store.read_log(saved, batch)}

        summary = _relay_once(pg_url, kafka_broker, topic, batch)
        assert summary["start_position"] == saved and summary["position"] == head

        records = read_topic(kafka_broker.bootstrap, topic)
        counts = collections.Counter(positions_of(records))
        assert set(counts) == {e.position for e in stored(engine)}
        duplicated = {p for p, n in counts.items() if n > 1}
        assert duplicated <= unacked, sorted(duplicated - unacked)[:10]
        check_order_per_customer(records)
    finally:
        positions.close()
        engine.close()


@pytest.mark.timeout(120)
def test_broker_paused_longer_than_the_producer_timeout_backs_off_and_completes(pg_url, clock, kafka_broker, topic):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(pg_url), KeyWrapper(KEK))
    paused_at: list[int] = []
    saved_while_paused: list[int] = []

    def pause_after_second_batch(relay: Relay) -> None:
        if relay.stats.batches == 2:
            paused_at.append(relay.stats.position)
            kafka_broker.pause()

    def on_failure(relay: Relay, exc: BaseException) -> None:
        saved_while_paused.append(relay.positions.load(relay.name, relay.topic))

    relay = make_relay(
        engine,
        kafka_broker,
        topic,
        batch_size=100,
        backoff_initial=0.2,
        backoff_max=1.0,
        producer_config={
            "request_timeout_ms": 1500,
            "delivery_timeout_ms": 2000,
            "max_block_ms": 2000,
            "bootstrap_timeout_ms": 2000,
        },
        on_batch=pause_after_second_batch,
        on_failure=on_failure,
    )
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.setdefault("stats", relay.run(stop_when_caught_up=True)))
    try:
        ingest(engine, clock, many(25, 20))
        runner.start()
        wait_for(lambda: relay.stats.failures >= 2, 60, "the relay to fail twice against the paused broker")
        assert kafka_broker.paused
        time.sleep(1.0)  # paused well past the 1.5 s request timeout, while the relay backs off
    finally:
        kafka_broker.resume()
    try:
        runner.join(60)
        assert not runner.is_alive(), "the relay did not finish after the broker came back"
    finally:
        relay.stop()
        runner.join(10)
        relay.close()
    try:
        stats = result["stats"]
        head = engine.store.head_position()
        assert stats.position == head and stats.failures >= 2 and stats.last_error
        assert set(saved_while_paused) == set(paused_at)  # the position never moved without acks

        records = read_topic(kafka_broker.bootstrap, topic)
        counts = collections.Counter(positions_of(records))
        assert set(counts) == {e.position for e in stored(engine)}
        in_flight = {r.position for r in engine.store.read_log(paused_at[0], 100)}
        assert {p for p, n in counts.items() if n > 1} <= in_flight
        check_order_per_customer(records)
    finally:
        engine.close()


@pytest.mark.timeout(60)
def test_cli_relay_once_on_sqlite_with_environment_configuration(sqlite_url, clock, kafka_broker, topic):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(sqlite_url), KeyWrapper(KEK))
    try:
        ingest(engine, clock, small_branch())
        head = engine.store.head_position()
    finally:
        engine.close()
    env = {**os.environ, "TIMELINE_DB": sqlite_url, "TIMELINE_KAFKA": kafka_broker.bootstrap, "TIMELINE_TOPIC": topic}
    runs = [
        subprocess.run(
            [TIMELINE, "relay", "--once", "--json"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["published"] == head and first["position"] == head and first["topic"] == topic
    assert second["published"] == 0 and second["start_position"] == head
    assert len(read_topic(kafka_broker.bootstrap, topic)) == head


@pytest.mark.timeout(60)
def test_relay_once_gives_up_on_an_unreachable_broker_with_one_line_and_exit_1(sqlite_url, clock, kafka_broker, topic):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(sqlite_url), KeyWrapper(KEK))
    try:
        ingest(engine, clock, small_branch())
    finally:
        engine.close()
    args = [TIMELINE, "relay", "--once", "--give-up-after", "3", "--db", sqlite_url]
    with kafka_broker.paused_for():
        run = subprocess.run(
            [*args, "--bootstrap", kafka_broker.bootstrap, "--topic", topic],
            capture_output=True,
            text=True,
            timeout=40,
            cwd=ROOT,
        )
    assert run.returncode == 1, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("timeline: error: relay default: ") and "giving up" in last, run.stderr
    assert "Traceback" not in run.stderr
    assert PositionStore(sqlite_url).load("default", topic) == 0


@pytest.mark.timeout(60)
def test_a_long_running_relay_logs_each_retry_with_its_growing_delay(pg_url, clock, kafka_broker, topic, caplog):
    from tests.conftest import KEK
    from timeline.crypto import KeyWrapper
    from timeline.store import open_store

    engine = Engine(open_store(pg_url), KeyWrapper(KEK))
    ingest(engine, clock, small_branch())
    relay = make_relay(
        engine,
        kafka_broker,
        topic,
        backoff_initial=0.1,
        backoff_max=0.4,
        producer_config={"request_timeout_ms": 500, "max_block_ms": 500, "bootstrap_timeout_ms": 500},
    )
    runner = threading.Thread(target=relay.run)
    caplog.set_level("WARNING", logger="timeline.consumers.relay")
    try:
        with kafka_broker.paused_for():
            runner.start()
            wait_for(lambda: relay.stats.failures >= 4, 40, "four failures against the paused broker")
        wait_for(lambda: relay.stats.published, 40, "the relay to publish once the broker is back")
    finally:
        relay.stop()
        runner.join(30)
        relay.close()
        engine.close()
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 4
    assert [m.rsplit("retrying in ", 1)[1] for m in retries[:4]] == ["0.1s", "0.2s", "0.4s", "0.4s"]


@pytest.mark.timeout(30)
def test_position_table_is_created_idempotently_and_kept_per_name_and_topic(db_url):
    a, b = PositionStore(db_url), PositionStore(db_url)
    try:
        assert a.load("default", "t1") == 0
        a.save("default", "t1", 10)
        a.save("default", "t1", 25)
        b.save("audit", "t1", 3)
        assert (b.load("default", "t1"), a.load("audit", "t1"), a.load("default", "t2")) == (25, 3, 0)
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_a_second_relay_with_the_same_name_and_topic_refuses_to_start_on_postgres(pg_url):
    a, b = PositionStore(pg_url), PositionStore(pg_url, lock_wait=0.5)
    try:
        a.acquire("default", "t1")
        with pytest.raises(RelayError, match="another relay"):
            b.acquire("default", "t1")
        b.acquire("audit", "t1")  # another name is another relay
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_the_caching_partitioner_maps_keys_as_the_default_one():
    from kafka.partitioner.default import DefaultPartitioner

    from timeline.consumers.relay.producer import KeyCachingPartitioner

    class Cluster:
        def __init__(self, n: int) -> None:
            self.n = n

        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(self.n))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(self.n))

    cached, default = KeyCachingPartitioner(limit=50), DefaultPartitioner()
    for n in (3, 7):
        for _ in range(2):  # second round from the cache (cleared past the limit)
            for i in range(120):
                key = f"C{i:05d}".encode()
                args = ("t", key, key, None, None, Cluster(n))
                assert cached.partition(*args) == default.partition(*args)
