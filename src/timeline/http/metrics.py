"""The service's Prometheus metrics: request latency by route, ingestion outcomes, the pipeline's positions and
lags (what ``/v1/status`` reports, read at each scrape), fold cache hits.

A registry per service (not the process-wide default), so that several services in one process (tests)
each count their own. No label holds customer data: routes are templates, rejection reasons a fixed set.
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from timeline.application.batch import Outcome

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


Report = Callable[[], dict[str, Any]]
"""The pipeline's status report (:func:`timeline.consumers.status.status`), as ``/v1/status`` answers it."""


class _Pipeline(Collector):
    """What ``/v1/status`` reports, as gauges computed at each scrape: the store's head, each relay's position
    and lag, each consumer group's lag per partition, and which parts answered (``timeline_status_part_up``:
    a broker that does not answer in time is 0 there, and its lags are left out, never waited for)."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def collect(self) -> Iterable[Metric]:
        report = self.report()
        up = GaugeMetricFamily(
            "timeline_status_part_up",
            "Whether each part of the pipeline answered this scrape (1) or not (0)",
            labels=["part"],
        )
        errors = report.get("errors", {})
        for part in ("store", "read_model", "kafka"):
            if part in errors or _reported(report, part):
                up.add_metric([part], 0 if part in errors else 1)
        yield up
        store = report.get("store") or {}
        if "head" in store:
            head = GaugeMetricFamily("timeline_store_head_position", "Position of the last event stored")
            head.add_metric([], store["head"])
            yield head
            position = GaugeMetricFamily(
                "timeline_relay_position", "Store position the relay has published up to", labels=["relay", "topic"]
            )
            lag = GaugeMetricFamily(
                "timeline_relay_lag", "Store head position minus the relay's position", labels=["relay", "topic"]
            )
            for relay in store.get("relays", []):
                position.add_metric([relay["name"], relay["topic"]], relay["position"])
                lag.add_metric([relay["name"], relay["topic"]], relay["behind"])
            yield from (position, lag)
        if "kafka" in errors:
            return
        lags = GaugeMetricFamily(
            "timeline_consumer_lag",
            "Messages of a partition after the group's offset (the read model's saved one where it keeps one)",
            labels=["model", "group", "topic", "partition"],
        )
        for group in report.get("groups", []):
            for part in group["partitions"]:
                value = part.get("saved_lag", part["lag"]) if group["kind"] else part["lag"]
                if value is not None:
                    labels = [group["kind"] or "", group["group"], part["topic"], str(part["partition"])]
                    lags.add_metric(labels, value)
        yield lags


def _reported(report: dict[str, Any], part: str) -> bool:
    """Whether the report holds figures of this part (a part not configured is neither up nor down)."""
    if part == "store":
        return bool(report.get("store"))
    if part == "read_model":
        return report.get("read_model", {}).get("summary") is not None
    return bool(report.get("topics")) or bool(report.get("groups"))


class _FoldCache(Collector):
    """``timeline_fold_cache_total{result}``: states answered from a cached fold as it was (hit) or not (miss)."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        hits, misses = self.counts()
        family = CounterMetricFamily(
            "timeline_fold_cache",
            "Customer states answered from the cached fold with no event to fold (hit), or after folding (miss)",
            labels=["result"],
        )
        family.add_metric(["hit"], hits)
        family.add_metric(["miss"], misses)
        yield family


class Metrics:
    """The service's metrics, in a registry of its own (what ``/metrics`` serves)."""

    def __init__(self, report: Report, folds: Callable[[], tuple[int, int]]) -> None:
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
        self.registry.register(_Pipeline(report))
        self.registry.register(_FoldCache(folds))

    def count(self, outcomes: Iterable[Outcome]) -> None:
        """Count ingested events by outcome and rejection reason."""
        for (status, reason), n in Tally((o.status, rejection_reason(o.error)) for o in outcomes).items():
            self.ingested.labels(outcome=status, reason=reason).inc(n)
