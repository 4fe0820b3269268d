"""The Prometheus endpoint of `timeline relay` and `timeline consume`, scraped from the running processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.consumers.pipeline import NOW, ROOT, TIMELINE, group_of, ingest, kill, pg_engine, relay_once, timeline
from tests.consumers.test_summary import branch_events
from tests.factories import deposit
from tests.kafka import free_port
from tests.support.waiting import wait_for
from timeline.domain.recorded import iso

pytestmark = pytest.mark.timeout(120)

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Series:
    """Every sample of ``/metrics``: (name, labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples whose labels include ``labels`` (None: no such sample)."""
    found = [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= ls]
    return sum(found) if found else None


def scraped(port: int) -> Series:
    try:
        return scrape(port)
    except OSError:  # not listening yet
        return {}


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([TIMELINE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr[-3000:]
    finally:
        kill(process)


def test_the_relay_serves_its_position_lag_and_published_messages(pg_url, kafka_broker, topic):
    port = free_port()
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(customers=10))
        head = engine.store.head_position()
        with running("relay", "--db", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
                     "--batch-size", "100", "--poll-interval", "0.1", "--metrics-port", str(port)):  # fmt: skip
            labels = {"relay": "default", "topic": topic}
            caught_up = wait_for(
                lambda: (s := scraped(port)) and value(s, "timeline_relay_position", **labels) == head and s,
                60,
                "the relay's position to reach the head",
            )
            assert value(caught_up, "timeline_relay_lag", **labels) == 0
            assert value(caught_up, "timeline_relay_messages_published_total", **labels) == head
            assert value(caught_up, "timeline_relay_failures_total", **labels) == 0

            ingest(engine, [deposit("C000001", at="2025-12-31T10:00:00+08:00")], at=NOW)
            later = wait_for(
                lambda: (s := scraped(port)) and value(s, "timeline_relay_position", **labels) == head + 1 and s,
                30,
                "the relay to publish the new event",
            )
            assert value(later, "timeline_relay_messages_published_total", **labels) == head + 1
            assert value(later, "timeline_relay_lag", **labels) == 0


def test_a_consumer_serves_lag_per_partition_applied_messages_batch_latency_and_cache_hits(pg_url, kafka_broker, topic):
    port, group = free_port(), group_of(topic)
    with pg_engine(pg_url) as engine:
        events = branch_events(customers=12)
        ingest(engine, events)
        head = relay_once(engine, kafka_broker, topic, partitions=6)
        command = ["consume", "summary", "--store", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
                   "--group", group, "--now", iso(NOW), "--tick-interval", "0",
                   "--metrics-port", str(port)]  # fmt: skip
        with running(*command):
            labels = {"model": "summary", "group": group, "topic": topic}

            def applied(n: int) -> Series | None:
                s = scraped(port)
                lags = [v for (name, ls), v in s.items() if name == "timeline_consumer_lag"]
                done = value(s, "timeline_consumer_messages_total", outcome="applied", **labels) == n
                return s if done and len(lags) == 6 and not any(lags) else None

            first = wait_for(lambda: applied(head), 60, "every message applied, every partition's lag 0")
            partitions = {dict(ls)["partition"] for (name, ls) in first if name == "timeline_consumer_lag"}
            assert partitions == {str(p) for p in range(6)}
            assert value(first, "timeline_consumer_messages_total", outcome="duplicate", **labels) == 0
            assert value(first, "timeline_consumer_batch_seconds_count", **labels) >= 1
            assert 0 < value(first, "timeline_consumer_batch_seconds_sum", **labels) < 60
            customers = {e["customer_id"] for e in events}
            assert value(first, "timeline_consumer_history_cache_total", result="miss", **labels) == len(customers)

            known = sorted(customers)[0]
            ingest(engine, [deposit(known, at="2025-12-31T10:00:00+08:00")], at=NOW)
            relay_once(engine, kafka_broker, topic)
            later = wait_for(lambda: applied(head + 1), 30, "the new event applied")
            assert value(later, "timeline_consumer_history_cache_total", result="hit", **labels) == 1, (
                "the customer's history was still in memory"
            )


def test_a_metrics_port_in_use_is_one_line_and_exit_2(pg_url):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = timeline("consume", "summary", "--db", pg_url, "--once", "--metrics-port", str(port), timeout=30)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"timeline: error: --metrics-port {port}: cannot listen there"), line
