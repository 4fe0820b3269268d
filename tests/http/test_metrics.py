"""``/metrics``: the pipeline's positions and lags read at each scrape (bounded when the broker is away), fold hits."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.consumers.pipeline import consume, group_of, ingest, pg_engine, relay_once
from tests.consumers.test_summary import branch_events
from tests.factories import registered
from tests.http.conftest import serve
from tests.kafka import Broker, start_broker
from tests.support.keys import KEK
from timeline.crypto import KekSource
from timeline.http.app import create_app

UNROUTABLE = "10.255.255.1:9092"
"""A broker address no packet reaches: connecting waits until it times out."""


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in the text format, ``None`` if absent."""
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}{re.escape('{' + shown + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else None


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Broker]:
    running = start_broker(tmp_path_factory.mktemp("tansu"))
    try:
        yield running
    finally:
        running.stop()


def test_fold_cache_hits_are_counted(served):
    served.get("/v1/customers/C1/state", "compliance")
    before = _sample(served.get("/metrics").text, "timeline_fold_cache_total", result="hit")
    served.get("/v1/customers/C1/state", "compliance")
    served.get("/v1/customers/C1/explain", "compliance")
    text = served.get("/metrics").text
    assert _sample(text, "timeline_fold_cache_total", result="hit") == before + 2
    assert _sample(text, "timeline_fold_cache_total", result="miss") >= 1


def test_a_scrape_with_the_broker_unreachable_answers_in_time_saying_so(served):
    service = serve(served.url, kafka=UNROUTABLE)
    try:
        with TestClient(create_app(service)) as client:
            started = time.monotonic()
            text = client.get("/metrics").text
            took = time.monotonic() - started
    finally:
        service.close()
    assert took < 4, took
    assert _sample(text, "timeline_status_part_up", part="kafka") == 0
    assert _sample(text, "timeline_status_part_up", part="store") == 1
    assert _sample(text, "timeline_store_head_position") == 3
    assert "timeline_consumer_lag{" not in text


@pytest.mark.timeout(120)
def test_metrics_carry_the_head_the_relay_position_and_lag_and_each_groups_lag_per_partition(pg_url, broker):
    topic = "customer-events-metrics"
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(10, 1, seed=2))
        relay_once(engine, broker, topic)
        consume(pg_url, broker, topic)
        ingest(engine, [registered(f"N{i}", at="2025-12-01T09:00:00+08:00") for i in range(3)])  # not published
        head = engine.store.head_position()
    service = serve(pg_url, kafka=broker.bootstrap, kek=KekSource(base64.urlsafe_b64encode(KEK).decode()))
    try:
        with TestClient(create_app(service)) as client:
            text = client.get("/metrics").text
    finally:
        service.close()
    assert _sample(text, "timeline_store_head_position") == head
    position = _sample(text, "timeline_relay_position", relay="default", topic=topic)
    assert position is not None and position < head
    assert _sample(text, "timeline_relay_lag", relay="default", topic=topic) == head - position
    assert _sample(text, "timeline_status_part_up", part="kafka") == 1
    group = group_of(topic)
    lags = [
        _sample(text, "timeline_consumer_lag", model="summary", group=group, topic=topic, partition=str(p))
        for p in range(3)
    ]
    assert lags == [0, 0, 0], text
