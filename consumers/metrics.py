"""Prometheus metrics of the relay and the read-model consumers, and the endpoint that serves them.

The series live in a registry of their own (:data:`REGISTRY`), updated once per
batch or poll (never per event), whether or not they are served:
``--metrics-port`` only starts the HTTP endpoint. No customer data is in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RELAY = ("relay", "topic")
RELAY_POSITION = Gauge(
    "timeline_relay_position", "Store position the relay has published up to.", RELAY, registry=REGISTRY
)
RELAY_LAG = Gauge(
    "timeline_relay_lag", "Store head position minus the relay's position (events not yet published).", RELAY,
    registry=REGISTRY,
)  # fmt: skip
RELAY_PUBLISHED = Counter(
    "timeline_relay_messages_published", "Messages the broker acknowledged.", RELAY, registry=REGISTRY
)
RELAY_FAILURES = Counter(
    "timeline_relay_failures", "Failed attempts (broker or database away) before a retry.", RELAY, registry=REGISTRY
)

CONSUMER = ("model", "group", "topic")
CONSUMER_LAG = Gauge(
    "timeline_consumer_lag",
    "Messages of a partition after the member's position (high watermark minus position).",
    (*CONSUMER, "partition"),
    registry=REGISTRY,
)
CONSUMER_MESSAGES = Counter(
    "timeline_consumer_messages",
    "Messages committed to the read model, by outcome: applied, duplicate (seen before), dead_letter.",
    (*CONSUMER, "outcome"),
    registry=REGISTRY,
)
CONSUMER_BATCH_SECONDS = Histogram(
    "timeline_consumer_batch_seconds",
    "From a batch's first poll to its database commit.",
    CONSUMER,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
CONSUMER_CACHE = Counter(
    "timeline_consumer_history_cache",
    "Customers of a batch whose history and last fold were in memory (hit) or read from the copy (miss).",
    (*CONSUMER, "result"),
    registry=REGISTRY,
)
CONSUMER_FAILURES = Counter(
    "timeline_consumer_failures", "Failed attempts (broker or database away) before a retry.", CONSUMER,
    registry=REGISTRY,
)  # fmt: skip


def serve(port: int) -> None:
    """Serve :data:`REGISTRY` at ``http://0.0.0.0:port/metrics`` from a daemon thread (the process's life)."""
    start_http_server(port, registry=REGISTRY)


class RelayMetrics:
    """One relay's series."""

    def __init__(self, name: str, topic: str) -> None:
        self.position = RELAY_POSITION.labels(name, topic)
        self.lag = RELAY_LAG.labels(name, topic)
        self.published = RELAY_PUBLISHED.labels(name, topic)
        self.failures = RELAY_FAILURES.labels(name, topic)

    def at(self, position: int, head: int) -> None:
        self.position.set(position)
        self.lag.set(max(head - position, 0))


class ConsumerMetrics:
    """One consumer group member's series (each member reports the partitions assigned to it)."""

    def __init__(self, model: str, group: str, topic: str) -> None:
        self.labels = (model, group, topic)
        self.applied, self.duplicates, self.dead_letters = (
            CONSUMER_MESSAGES.labels(*self.labels, outcome) for outcome in ("applied", "duplicate", "dead_letter")
        )
        self.batch_seconds = CONSUMER_BATCH_SECONDS.labels(*self.labels)
        self.hits, self.misses = (CONSUMER_CACHE.labels(*self.labels, result) for result in ("hit", "miss"))
        self.failures = CONSUMER_FAILURES.labels(*self.labels)
        self._partitions: set[int] = set()

    def batch(self, applied: int, duplicates: int, dead_letters: int, seconds: float) -> None:
        self.applied.inc(applied)
        self.duplicates.inc(duplicates)
        self.dead_letters.inc(dead_letters)
        self.batch_seconds.observe(max(seconds, 0.0))

    def cache(self, hits: int, misses: int) -> None:
        self.hits.inc(hits)
        self.misses.inc(misses)

    def lag(self, lags: Mapping[TopicPartition, int]) -> None:
        """The lag of every partition assigned now; partitions no longer assigned leave the output."""
        self._forget(self._partitions - {tp.partition for tp in lags})
        for tp, lag in lags.items():
            CONSUMER_LAG.labels(*self.labels, str(tp.partition)).set(lag)
            self._partitions.add(tp.partition)

    def revoked(self) -> None:
        self._forget(set(self._partitions))

    def _forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            CONSUMER_LAG.remove(*self.labels, str(p))
            self._partitions.discard(p)
