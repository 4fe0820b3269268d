"""The relay when things go wrong: killed around its save, broker paused or away, a restart."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from tests.consumers.test_relay import (
    ROOT,
    TIMELINE,
    check_order_per_customer,
    ingest,
    make_relay,
    many,
    positions_of,
    small_branch,
    stored,
)
from tests.kafka import Broker, read_topic
from tests.support.waiting import wait_for
from timeline.consumers.relay.positions import PositionStore
from timeline.consumers.relay.relay import Relay
from timeline.engine import Engine


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
