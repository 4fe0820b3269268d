"""The summary consumer when things go wrong: killed mid-batch, database lost, broker away."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest

from tests.consumers.pipeline import (
    NOW,
    ROOT,
    assert_read_model_exact,
    group_of,
    ingest,
    kill,
    pg_engine,
    relay_once,
    scalar,
    timeline,
)
from tests.consumers.test_summary import branch_events
from tests.support.waiting import wait_for
from timeline.consumers.readmodels.summary import SummaryConsumer
from timeline.domain.recorded import iso

LOST_CONNECTION = r"terminating connection|server closed the connection|connection is lost|consuming input failed"

CRASHING_CONSUMER = """
import datetime as dt, os, signal, sys
from pathlib import Path
from timeline.consumers.readmodels.summary import SummaryConsumer

url, bootstrap, topic, where, marker, now, group = sys.argv[1:8]
fixed = dt.datetime.fromisoformat(now)

class Crashing(SummaryConsumer):
    batches = 0

    def finished(self, committed):
        if where == "after" and committed and self.stats.batches == 2:  # third batch committed, Kafka not told
            Path(marker).write_text(str(self.stats.applied + len(self._last)))
            os.kill(os.getpid(), signal.SIGKILL)

    def _insert_events(self, cur, events):
        self._last = super()._insert_events(cur, events)
        if where == "inside" and self.stats.batches == 2:  # third batch: in the copy, not committed
            Path(marker).write_text(str(self.stats.applied + len(self._last)))
            os.kill(os.getpid(), signal.SIGKILL)
        return self._last

# A short session, so that the restarted consumer does not wait long for this dead member to expire.
config = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
Crashing(
    url, bootstrap, topic, group=group, clock=lambda: fixed, max_batch=300, tick_interval=0, consumer_config=config
).run()
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["after", "inside"])
def test_a_consumer_killed_around_its_commit_resumes_exactly(pg_url, kafka_broker, topic, tmp_path, where):
    """SIGKILL after the view's commit and before the next poll (Kafka never told), or inside the transaction."""
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(30, 1.5, seed=11))
        head = engine.store.head_position()
        relay_once(engine, kafka_broker, topic)
        marker = tmp_path / "killed"
        crashing = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CRASHING_CONSUMER,
                pg_url,
                kafka_broker.bootstrap,
                topic,
                where,
                str(marker),
                iso(NOW),
                group_of(topic),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: crashing.poll() is not None, 90, "the consumer to kill itself")
        finally:
            kill(crashing)
        assert marker.exists(), crashing.stderr.read().decode()[-3000:] if crashing.stderr else ""
        applied_before = int(marker.read_text())
        in_view = scalar(pg_url, "SELECT count(*) FROM summary_events")
        if where == "after":
            assert in_view == applied_before > 0  # the third batch is in the view
        else:
            assert 0 < in_view < applied_before  # the third batch rolled back with the process
        assert in_view < head

        done = timeline(
            "consume", "summary", "--db", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
            "--once", "--now", iso(NOW), "--json", "--tick-interval", "0", "--group", group_of(topic),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        # Resumed at the database's offsets, not Kafka's (which lag a batch behind): nothing twice.
        assert (stats["applied"], stats["duplicates"]) == (head - in_view, 0)
        assert scalar(pg_url, "SELECT count(*) FROM summary_events") == head
        assert_read_model_exact(engine, pg_url)


@pytest.mark.timeout(120)
def test_a_lost_database_connection_mid_run_redoes_the_batch_from_the_saved_offsets(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(20, 1, seed=9))
        head = engine.store.head_position()
        relay_once(engine, kafka_broker, topic)
        killed: list[int] = []

        def kill_connection_after_first_batch(result: Any) -> None:
            if not killed:  # the next batch finds its connection gone, mid-transaction
                pid = consumer.conn.info.backend_pid
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed.append(pid)

        consumer = SummaryConsumer(
            pg_url,
            kafka_broker.bootstrap,
            topic,
            group=group_of(topic),
            clock=lambda: NOW,
            max_batch=200,
            tick_interval=0,
            backoff_initial=0.1,
            on_commit=kill_connection_after_first_batch,
        )
        try:
            consumer.run(until_caught_up=True)
        finally:
            consumer.close()
        assert killed and consumer.stats.failures >= 1
        # psycopg words a backend killed under an idle connection in more than one way.
        assert re.search(LOST_CONNECTION, consumer.stats.last_error or ""), consumer.stats.last_error
        assert consumer.stats.applied == head and consumer.stats.duplicates == 0
        assert scalar(pg_url, "SELECT count(*) FROM summary_events") == head
        assert_read_model_exact(engine, pg_url)


@pytest.mark.timeout(60)
def test_consume_once_gives_up_on_an_unreachable_broker_with_one_line_and_exit_1(pg_url, kafka_broker, topic):
    with kafka_broker.paused_for():
        run = timeline(
            "consume", "summary", "--once", "--give-up-after", "3", "--db", pg_url,
            "--bootstrap", kafka_broker.bootstrap, "--topic", topic, timeout=40,
        )  # fmt: skip
    assert run.returncode == 1, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("timeline: error: summary consumer timeline-summary: ") and "giving up" in last
    assert "Traceback" not in run.stderr


@pytest.mark.timeout(90)
def test_a_bounded_consumer_gives_up_when_the_broker_stops_answering_mid_run(pg_url, kafka_broker, topic):
    from timeline.consumers.backoff import GaveUp

    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(10, 1, seed=5))
        relay_once(engine, kafka_broker, topic)
    consumer = SummaryConsumer(
        pg_url,
        kafka_broker.bootstrap,
        topic,
        group=group_of(topic),
        clock=lambda: NOW,
        max_batch=5,
        tick_interval=0,
        give_up_after=3,
        consumer_config={"max_partition_fetch_bytes": 2048, "fetch_max_bytes": 4096},
        on_commit=lambda result: kafka_broker.pause(),
    )
    try:
        with pytest.raises(GaveUp, match="giving up"):
            consumer.run(until_caught_up=True)
    finally:
        kafka_broker.resume()
        consumer.close()
    assert consumer.stats.applied > 0 and consumer.stats.failures >= 1
    assert "no group coordinator" in (consumer.stats.last_error or "")


@pytest.mark.timeout(60)
def test_a_long_running_consumer_keeps_retrying_and_logs_each_retry_with_its_delay(pg_url, kafka_broker, topic, caplog):
    consumer = SummaryConsumer(
        pg_url,
        kafka_broker.bootstrap,
        topic,
        group=group_of(topic),
        clock=lambda: NOW,
        tick_interval=0,
        backoff_initial=0.1,
        backoff_max=0.4,
        consumer_config={"request_timeout_ms": 500, "bootstrap_timeout_ms": 500},
    )
    caplog.set_level("WARNING", logger="timeline.consumers.readmodels")
    runner = threading.Thread(target=consumer.run)
    try:
        with kafka_broker.paused_for():
            runner.start()
            wait_for(lambda: consumer.stats.failures >= 4, 40, "four failures against the paused broker")
    finally:
        consumer.stop()
        runner.join(30)
        consumer.close()
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [m.rsplit("retrying in ", 1)[1] for m in retries[:4]] == ["0.1s", "0.2s", "0.4s", "0.4s"]
    assert all(m.startswith(f"summary consumer {group_of(topic)}: ") for m in retries)
