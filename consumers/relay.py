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
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from kafka.errors import ClusterAuthorizationFailedError, KafkaError, UnsupportedVersionError
from kafka.partitioner.default import DefaultPartitioner
from timeline.consumers.backoff import Backoff, describe
from timeline.consumers.cloudevents import CONTENT_TYPE, SCHEMA_BASE, stored_to_bytes

from timeline.application.keyring import KeyRing
from timeline.application.ports import EventStore, StoredRow
from timeline.domain.errors import StoreUnavailable, TimelineError

log = logging.getLogger(__name__)

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    PersistenceError,
    psycopg.Error,
    sqlite3.Error,
    StoreUnavailable,
    OSError,
)

DEFAULT_TOPIC = "customer-events"
DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_NAME = "default"
HEADERS = [("content-type", CONTENT_TYPE.encode())]
PROGRESS_EVERY = 5.0
TIMEOUTS = ("request_timeout_ms", "delivery_timeout_ms", "max_block_ms", "bootstrap_timeout_ms")
IDEMPOTENCE_REFUSED = (UnsupportedVersionError, ClusterAuthorizationFailedError)
"""Errors of a broker that does not grant producer ids (InitProducerId): fall back to a plain producer."""


class KeyCachingPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (murmur2 of the key, as the Java client), remembered per key.

    The same customer maps to the same partition either way; hashing in pure
    Python cost more per message than the rest of the partitioning.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._cache: dict[tuple[str, bytes, int], int] = {}
        self._limit = limit

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):  # type: ignore[no-untyped-def]
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        cache_key = (topic, serialized_key, len(partitions) if partitions else 0)
        found = self._cache.get(cache_key)
        if found is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            found = super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            self._cache[cache_key] = found
        return found


PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "compression_type": None,
    "linger_ms": 5,
    "batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "request_timeout_ms": 30_000,
    "delivery_timeout_ms": 60_000,
    "max_block_ms": 30_000,
    "bootstrap_timeout_ms": 30_000,
    "retry_backoff_ms": 200,
    "reconnect_backoff_max_ms": 5_000,
    "metrics_enabled": False,
}
"""Tuned for bulk: big batches per partition, a few ms of linger, no compression."""


class RelayError(TimelineError):
    """The relay cannot run as configured (e.g. another copy holds its position)."""


def fast_crc_available() -> bool:
    """kafka-python checksums every record batch; without the ``crc32c`` package it does so in pure Python."""
    try:
        from kafka.record import util

        return util.crc32c_c is not None  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return False


class PositionStore:
    """``timeline_relay_positions``: where each relay (name, topic) has published up to.

    Same database as the store, own connection (the store's port has no
    mutable tables). Created idempotently.
    """

    def __init__(self, url: str, lock: bool = True, lock_wait: float = 10.0) -> None:
        self.url = url
        self._lock = lock
        self._lock_wait = lock_wait
        self._locked: tuple[str, str] | None = None
        self._conn: Any = None
        self._connect()

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def _connect(self) -> None:
        if self.is_postgres:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS timeline_relay_positions ("
                " name text NOT NULL, topic text NOT NULL, position bigint NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (name, topic))"
            )
            if self._locked:
                name, topic = self._locked
                self._locked = None
                self.acquire(name, topic)
        else:
            path = self.url[len("sqlite:///") :]
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS timeline_relay_positions ("
                " name TEXT NOT NULL, topic TEXT NOT NULL, position INTEGER NOT NULL,"
                " updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (name, topic))"
            )

    def acquire(self, name: str, topic: str) -> None:
        """PostgreSQL: hold an advisory lock on (name, topic) for this connection's life.

        Waits up to ``lock_wait`` seconds: the server session of a relay that
        was just killed may linger a moment before its lock is released.
        """
        if not (self.is_postgres and self._lock) or self._locked == (name, topic):
            return
        key = zlib.crc32(f"timeline-relay\0{name}\0{topic}".encode()) - 2**31
        deadline = time.monotonic() + self._lock_wait
        while not self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (7431, key)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise RelayError(f"another relay named {name!r} is publishing to topic {topic!r} from this database")
            time.sleep(0.2)
        self._locked = (name, topic)

    def load(self, name: str, topic: str) -> int:
        mark = "%s" if self.is_postgres else "?"
        row = self._conn.execute(
            f"SELECT position FROM timeline_relay_positions WHERE name = {mark} AND topic = {mark}", (name, topic)
        ).fetchone()
        return int(row[0]) if row else 0

    def save(self, name: str, topic: str, position: int) -> None:
        mark = "%s" if self.is_postgres else "?"
        now = "now()" if self.is_postgres else "CURRENT_TIMESTAMP"
        self._conn.execute(
            f"INSERT INTO timeline_relay_positions (name, topic, position) VALUES ({mark}, {mark}, {mark}) "
            f"ON CONFLICT (name, topic) DO UPDATE SET position = excluded.position, updated_at = {now}",
            (name, topic, position),
        )

    def reconnect(self) -> None:
        self.close()
        self._connect()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None


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
        bootstrap: str = DEFAULT_BOOTSTRAP,
        topic: str = DEFAULT_TOPIC,
        *,
        name: str = DEFAULT_NAME,
        batch_size: int = 5000,
        positions: PositionStore | None = None,
        producer_config: dict[str, Any] | None = None,
        idempotence: bool | None = None,
        partitions: int = 3,
        replication_factor: int = 1,
        create_topic: bool = True,
        poll_interval: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        give_up_after: float | None = None,
        schema_base: str = SCHEMA_BASE,
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
        self.idempotence = idempotence
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.create_topic = create_topic
        self.poll_interval = poll_interval
        self.schema_base = schema_base
        self.on_batch = on_batch
        self.on_failure = on_failure
        self.stats = RelayStats()
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
                if stop_when_caught_up:
                    break
                self.stop_event.wait(self.poll_interval)
                continue
            if not self._publish_until_acked(rows):
                break
            self._retrying(lambda last=rows[-1].position: self._save(last))
            self.stats.published += len(rows)
            self.stats.batches += 1
            self._progress()
            if self.on_batch:
                self.on_batch(self)
        self._close_producer(timeout=10)
        self._progress(final=True)
        return self.stats

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
        messages = [
            (r.customer_id.encode(), stored_to_bytes(r, keys[r.customer_id].erased, self.schema_base)) for r in rows
        ]
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
                if self.idempotence is None and self.stats.idempotent and isinstance(exc, IDEMPOTENCE_REFUSED):
                    log.warning("the broker refuses the idempotent producer (%s); going on without it", exc)
                    self.idempotence = False
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
            if self.idempotence is False:
                self._producer = KafkaProducer(
                    **config, enable_idempotence=False, max_in_flight_requests_per_connection=1
                )
            else:
                try:
                    self._producer = KafkaProducer(**config, enable_idempotence=True)
                except (KafkaConfigurationError, UnsupportedVersionError) as exc:
                    if self.idempotence:
                        raise
                    log.warning("idempotent producer unsupported here (%s); retries may duplicate", exc)
                    self.idempotence = False
                    # One request in flight: a retried request cannot overtake a later one.
                    self._producer = KafkaProducer(
                        **config, enable_idempotence=False, max_in_flight_requests_per_connection=1
                    )
            self.stats.idempotent = getattr(self._producer, "_transaction_manager", None) is not None
        return self._producer

    def _close_producer(self, timeout: float) -> None:
        """Close the producer; after a failure, abandon whatever it still holds.

        kafka-python's ``close`` flushes first and, if that times out, raises
        before stopping its sender thread, which would then go on retrying old
        messages next to the new producer's. So the sender is force-closed here.
        """
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a broken producer is thrown away anyway
            log.debug("closing the producer: %s", exc)
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(5)
            producer._closed = True  # noqa: SLF001 - nothing left to close; keeps __del__ from flushing again
            if getattr(producer, "_metrics", None):
                producer._metrics.close()  # noqa: SLF001

    def _ensure_topic(self) -> None:
        if self._topic_ready or not self.create_topic:
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
        self.stats.failures += 1
        self.stats.last_error = describe(exc)
        if self.on_failure:
            self.on_failure(self, exc)
        self.backoff.failed(exc, doing, attempt=self._attempt_seconds)

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
