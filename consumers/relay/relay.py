"""The Kafka relay: the event store is the outbox, and this publishes it, in global order.

Loop: read the global log after the relay's saved position (a batch), decode it
without keys (PII reads as ``{"$encrypted": true}`` or ``{"$erased": true}``),
send every event as a CloudEvent (:mod:`timeline.consumers.cloudevents`) with key =
customer id (one customer, one partition, in order), wait until the broker
has acknowledged every message (``acks="all"``), and only then save the last
position of the batch. Any failure (broker away, timeout, database error)
backs off and retries the same batch with a new producer; the position never
moves past an unacknowledged event. A bounded run (``give_up_after``, the
CLI's ``--once``) raises :class:`timeline.consumers.backoff.GaveUp` once it has failed
for that long, and bounds the Kafka clients' own timeouts to fit (see
:mod:`timeline.consumers.backoff`).

So delivery is at least once: a relay killed after sending and before saving
sends that one batch again when it restarts. Consumers drop repeats by the
CloudEvent ``id`` (the event id) and can check order by ``streamversion``.

The position lives in ``timeline_relay_positions (name, topic, position)`` in
the store's own database; it is the one mutable table next to the immutable
event tables. On PostgreSQL a relay holds an advisory lock on its (name,
topic), so a second copy refuses to start instead of publishing twice.

Order: the producer is idempotent where the broker grants producer ids (Tansu
and Apache Kafka do), which keeps per-partition order with 5 requests in
flight; without it, one request in flight. Throughput needs the ``crc32c``
package: kafka-python otherwise checksums every record batch in pure Python
(measured here: 9,000 instead of 26,000 events/s).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from kafka.errors import ClusterAuthorizationFailedError, KafkaError, UnsupportedVersionError

from timeline.application.keyring import KeyRing
from timeline.application.ports import EventStore, StoredRow
from timeline.consumers.backoff import Backoff, describe, describe_kafka
from timeline.consumers.cloudevents import CONTENT_TYPE, stored_to_bytes
from timeline.consumers.metrics import RelayMetrics
from timeline.consumers.relay.positions import PositionStore, RelayError
from timeline.consumers.relay.producer import (
    PRODUCER_DEFAULTS,
    KeyCachingPartitioner,
    close_producer,
    fast_crc_available,
)
from timeline.domain.errors import StoreUnavailable

log = logging.getLogger(__name__)

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    PersistenceError,
    psycopg.Error,
    sqlite3.Error,
    StoreUnavailable,
    OSError,
)

DEFAULT_NAME = "default"
HEADERS = [("content-type", CONTENT_TYPE.encode())]
PROGRESS_EVERY = 5.0
TIMEOUTS = ("request_timeout_ms", "delivery_timeout_ms", "max_block_ms", "bootstrap_timeout_ms")
IDEMPOTENCE_REFUSED = (UnsupportedVersionError, ClusterAuthorizationFailedError)
"""Errors of a broker that does not grant producer ids (InitProducerId): fall back to a plain producer."""


@dataclass
class RelayStats:
    published: int = 0
    batches: int = 0
    failures: int = 0
    position: int = 0
    start_position: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    idempotent: bool | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def to_json(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "batches": self.batches,
            "failures": self.failures,
            "start_position": self.start_position,
            "position": self.position,
            "seconds": round(self.elapsed, 3),
            "events_per_second": round(self.published / self.elapsed, 1) if self.elapsed > 0 else None,
            "idempotent": self.idempotent,
            "last_error": self.last_error,
        }


class Relay:
    """Publishes the store's global log to one topic, at least once, in order per customer."""

    def __init__(
        self,
        store: EventStore,
        bootstrap: str,
        topic: str,
        *,
        name: str = DEFAULT_NAME,
        batch_size: int = 5000,
        positions: PositionStore | None = None,
        producer_config: dict[str, Any] | None = None,
        partitions: int = 3,
        replication_factor: int = 1,
        poll_interval: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        give_up_after: float | None = None,
        on_batch: Callable[[Relay], None] | None = None,
        on_failure: Callable[[Relay, BaseException], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.name = name
        self.batch_size = batch_size
        self.positions = positions or PositionStore(store.url)
        self.stop_event = threading.Event()
        self.backoff = Backoff(log, f"relay {name}", backoff_initial, backoff_max, give_up_after, self.stop_event)
        self.producer_config = self._bounded({**PRODUCER_DEFAULTS, **(producer_config or {})})
        self._idempotence_refused = False
        """The broker grants no producer ids: go on with a plain producer, one request in flight."""
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.poll_interval = poll_interval
        self.on_batch = on_batch
        self.on_failure = on_failure
        self.stats = RelayStats()
        self.metrics = RelayMetrics(name, topic)
        self._producer: Any = None
        self._topic_ready = False
        self._last_progress = time.monotonic()

    def _bounded(self, config: dict[str, Any]) -> dict[str, Any]:
        """The producer's timeouts, each bounded so that one attempt fits a bounded run's deadline."""
        bound = {k: int(self.backoff.attempt_timeout(config[k] / 1000) * 1000) for k in TIMEOUTS}
        # kafka-python wants delivery_timeout_ms >= linger_ms + request_timeout_ms.
        bound["delivery_timeout_ms"] = max(
            bound["delivery_timeout_ms"], config["linger_ms"] + bound["request_timeout_ms"]
        )
        return {**config, **bound}

    @property
    def _attempt_seconds(self) -> float:
        """How long one attempt to publish a batch may take."""
        return self.producer_config["delivery_timeout_ms"] / 1000

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running loop to finish its batch and return."""
        self.stop_event.set()

    def close(self) -> None:
        self._close_producer(timeout=5)
        self.positions.close()

    def run(self, stop_when_caught_up: bool = False) -> RelayStats:
        """Publish until stopped, or (``stop_when_caught_up``) until the log has nothing newer."""
        self.positions.acquire(self.name, self.topic)
        self.stats = RelayStats()
        self.backoff.succeeded()
        start = self._retrying(lambda: self.positions.load(self.name, self.topic))
        if start is None:  # stopped before the database answered
            return self.stats
        self.stats.position = self.stats.start_position = start
        head = self._retrying(self.store.head_position)
        if head is not None:
            self.metrics.at(start, head)
        if head is not None and start > head:
            log.warning(
                "relay %s: saved position %d is beyond the log's head %d (restored database?)", self.name, start, head
            )
        if not fast_crc_available():
            log.warning("the crc32c package is missing: kafka-python checksums in pure Python (slow)")
        log.info(
            "relay %s: publishing to %s on %s after position %d",
            self.name,
            self.topic,
            self.bootstrap,
            self.stats.position,
        )
        while not self.stop_event.is_set():
            rows = self._retrying(lambda: self.store.read_log(self.stats.position, self.batch_size))
            if rows is None:  # stopped while retrying
                break
            if not rows:
                self.metrics.at(self.stats.position, self.stats.position)  # nothing after it: caught up
                if stop_when_caught_up:
                    break
                self.stop_event.wait(self.poll_interval)
                continue
            if not self._publish_until_acked(rows):
                break
            self._retrying(lambda last=rows[-1].position: self._save(last))
            self.stats.published += len(rows)
            self.stats.batches += 1
            self.metrics.published.inc(len(rows))
            self._measure_lag(rows)
            self._progress()
            if self.on_batch:
                self.on_batch(self)
        self._close_producer(timeout=10)
        self._progress(final=True)
        return self.stats

    def _measure_lag(self, rows: list[StoredRow]) -> None:
        """A short batch was the log's end when read; after a full one, ask the store for its head."""
        head = rows[-1].position if len(rows) < self.batch_size else self._retrying(self.store.head_position)
        if head is not None:
            self.metrics.at(self.stats.position, head)

    def _progress(self, final: bool = False) -> None:
        """A progress line at most every ``PROGRESS_EVERY`` seconds, and one at the end."""
        now = time.monotonic()
        if final or now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            log.info(
                "relay %s: %s %d events, position %d (%.0f events/s, %d failures)",
                self.name,
                "stopped after" if final else "published",
                self.stats.published,
                self.stats.position,
                self.stats.published / max(self.stats.elapsed, 1e-9),
                self.stats.failures,
            )

    # -- one batch ---------------------------------------------------------------------------

    def _publish_until_acked(self, rows: list[StoredRow]) -> bool:
        """Send the batch until every message is acknowledged; False if stopped first."""
        # Key status as of now (a fresh ring each batch): PII of a customer erased meanwhile reads as erased.
        keys = self._retrying(lambda: KeyRing(self.store, None).keys({r.customer_id for r in rows}))
        if keys is None:
            return False
        messages = [(r.customer_id.encode(), stored_to_bytes(r, keys[r.customer_id].erased)) for r in rows]
        while not self.stop_event.is_set():
            try:
                self._ensure_topic()
                producer = self._ensure_producer()
                futures = [producer.send(self.topic, key=k, value=v, headers=HEADERS) for k, v in messages]
                timeout = self._attempt_seconds + self.producer_config["request_timeout_ms"] / 1000
                left = self.backoff.remaining()
                producer.flush(timeout=timeout if left is None else max(min(timeout, left), 0.1))
                for f in futures:
                    if not f.is_done:
                        raise TimeoutError("a message was neither acknowledged nor failed after flush")
                    if f.failed():
                        raise f.exception
                self.backoff.succeeded()
                return True
            except (KafkaError, OSError, TimeoutError) as exc:  # back off, retry the same batch
                if self.stats.idempotent and isinstance(exc, IDEMPOTENCE_REFUSED):
                    log.warning("the broker refuses the idempotent producer (%s); going on without it", exc)
                    self._idempotence_refused = True
                self._failed(exc, f"publishing positions {rows[0].position}..{rows[-1].position}")
                self._close_producer(timeout=0)
        return False

    def _save(self, position: int) -> None:
        self.positions.save(self.name, self.topic, position)
        self.stats.position = position

    # -- broker ------------------------------------------------------------------------------

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaConfigurationError

            config = {
                "bootstrap_servers": self.bootstrap,
                "partitioner": KeyCachingPartitioner(),
                "client_id": f"timeline-relay-{self.name}",
                **self.producer_config,
            }
            if not self._idempotence_refused:
                try:
                    self._producer = KafkaProducer(**config, enable_idempotence=True)
                except (KafkaConfigurationError, UnsupportedVersionError) as exc:
                    log.warning("idempotent producer unsupported here (%s); retries may duplicate", exc)
                    self._idempotence_refused = True
            if self._idempotence_refused:
                # One request in flight: a retried request cannot overtake a later one.
                self._producer = KafkaProducer(
                    **config, enable_idempotence=False, max_in_flight_requests_per_connection=1
                )
            self.stats.idempotent = getattr(self._producer, "_transaction_manager", None) is not None
        return self._producer

    def _close_producer(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer, timeout)

    def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"timeline-relay-{self.name}-admin",
            request_timeout_ms=self.producer_config["request_timeout_ms"],
            bootstrap_timeout_ms=self.producer_config["max_block_ms"],
        )
        try:
            if self.topic not in admin.list_topics():
                try:
                    admin.create_topics([NewTopic(self.topic, self.partitions, self.replication_factor)])
                    log.info("created topic %s (%d partitions)", self.topic, self.partitions)
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
        self._topic_ready = True

    # -- failures ----------------------------------------------------------------------------

    def _failed(self, exc: BaseException, doing: str) -> None:
        """Count and report the failure, then wait (:class:`GaveUp` once a bounded run is out of time)."""
        within = self.producer_config["max_block_ms"] / 1000
        self.stats.failures += 1
        self.metrics.failures.inc()
        self.stats.last_error = describe_kafka(exc, self.bootstrap, within) if isinstance(exc, KafkaError) else None
        self.stats.last_error = self.stats.last_error or describe(exc)
        if self.on_failure:
            self.on_failure(self, exc)
        self.backoff.failed(exc, doing, attempt=self._attempt_seconds, why=self.stats.last_error)

    def _retrying(self, action: Callable[[], Any]) -> Any:
        """Run a database action until it succeeds (reconnecting), or None once stopped."""
        while True:
            try:
                result = action()
                self.backoff.succeeded()
                return result
            except DATABASE_ERRORS as exc:  # database away: back off and retry
                self._failed(exc, "database access")
                if self.stop_event.is_set():
                    return None
                try:
                    self.positions.reconnect()
                except RelayError:  # another relay took our (name, topic) while we were away
                    raise
                except Exception as again:  # noqa: BLE001 - still away: the next round retries
                    log.debug("reconnecting: %s", again)
