"""The service's Prometheus metrics: request latency by route, ingestion outcomes, the store's head position.

A registry per service (not the process-wide default), so that several services in one process (tests)
each count their own. No label holds customer data: routes are templates, rejection reasons a fixed set.
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from timeline.application.batch import Outcome
from timeline.application.ports import EventStore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern))
    for label, pattern in (
        ("atomic", r"atomic input had rejections"),
        ("malformed", r"malformed JSON|duplicate key|too deep|number is longer|not UTF-8|line is longer|JSON object"),
        ("engine_only", r"written by the engine only|recorded_at is set by the engine"),
        ("schema_version", r"schema_version|no upcaster"),
        ("not_registered", r"is not registered"),
        ("already_registered", r"is already registered"),
        ("erased", r"is erased|cannot be erased"),
        ("id_reused", r"already used"),
        ("correction", r"voided|cannot be voided|names no event|Unknown target|no such event"),
        ("internal", r"internal error"),
    )
)


def rejection_reason(error: str | None) -> str:
    """The class of a rejection, from a fixed set (a label must not carry the message's ids and values)."""
    if not error:
        return ""
    return next((label for label, pattern in _REASONS if pattern.search(error)), "invalid")


class _StoreHead(Collector):
    """``timeline_store_head_position``, read from the store at each scrape."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        try:
            head = self.store.head_position()
        except Exception:  # noqa: BLE001 - an unreachable store leaves the gauge out; /readyz says why
            return []
        gauge = GaugeMetricFamily("timeline_store_head_position", "Position of the last event stored")
        gauge.add_metric([], head)
        return [gauge]


class Metrics:
    """The service's metrics, in a registry of its own (what ``/metrics`` serves)."""

    def __init__(self, store: EventStore) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "timeline_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested = Counter(
            "timeline_events_ingested",
            "Events received by POST /v1/events, by outcome (accepted, rejected, duplicate) and rejection reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "timeline_ingest_duration_seconds",
            "Time to ingest one POST /v1/events body",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreHead(store))

    def count(self, outcomes: Iterable[Outcome]) -> None:
        """Count ingested events by outcome and rejection reason."""
        for (status, reason), n in Tally((o.status, rejection_reason(o.error)) for o in outcomes).items():
            self.ingested.labels(outcome=status, reason=reason).inc(n)
