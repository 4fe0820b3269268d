"""A consumer group that keeps a PostgreSQL view of customer state, applying each message exactly once.

The relay delivers at least once; this makes the *effect* exactly once:

- Every poll batch is one database transaction: the batch's events go into
  the consumer's own copy (``{prefix}_events``, primary key ``event_id``: a
  repeat inserts nothing and changes nothing), the state of every customer
  that got a new event is computed again from that copy, as of now (as
  known now), the view rows are written, and the next offset of each
  partition is saved in
  ``{prefix}_offsets`` — all or nothing.
- On partition assignment the consumer seeks to the offsets saved in the
  database (a partition it never applied starts at the beginning), so a
  consumer killed anywhere — before, during or after that commit — resumes
  exactly after the last batch the view contains. Kafka's own committed
  offsets are written after the database commit, best effort, only so that
  ``timeline status`` and Kafka tooling can show the group's lag.
- A message that is not a CloudEvent (invalid JSON, say) goes to the
  dead-letter topic ``<topic>.dlq`` with the reason in a header, is recorded
  in ``{prefix}_dead_letters``, and counts as done: the consumer continues.
- Time alone changes state (a downgrade after 90 days, 180 days of silence):
  each customer's ``recheck_at`` is the next such instant (or the instant an
  event already received starts to count); :meth:`ProjectingConsumer.tick`
  re-evaluates the customers whose instant has passed. The consumer ticks on
  a timer; ``timeline tick`` does it from outside.
- Failures (broker or database away) back off and retry (:mod:`timeline.consumers.backoff`):
  for ever in a long-running consumer, one warning per retry; a bounded run
  (``give_up_after``, the CLI's ``--once``) raises
  :class:`timeline.consumers.backoff.GaveUp` once it has made no progress for that long.
  A paused or partitioned broker does not make ``poll`` fail, it just returns
  nothing: so the group coordinator being unknown for longer than one request
  timeout counts as a failure too.

Histories are cached in memory per customer (bounded, least recently used)
and read back from ``{prefix}_events`` on a miss, so a batch costs one fold
per customer touched, not one per event. With each history the cache keeps
its fold (:func:`timeline.projections.state.fold`): events that come after every
counted one — new activity, the usual case — extend it instead of folding
the whole history again; a late event or a correction folds it again, so
the state is exactly the one of folding from scratch. Subclasses decide
what a state becomes (:meth:`ProjectingConsumer.write`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import psycopg
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from timeline.consumers import readmodel
from timeline.consumers.backoff import Backoff, GaveUp, describe
from timeline.consumers.cloudevents import NotACloudEvent, parse
from timeline.projections.state import CustomerState, Folded, customer_state, fold

from timeline.domain.errors import StoreUnavailable, TimelineError, UnknownCustomer
from timeline.domain.policy import Policy, load_policy
from timeline.domain.recorded import RecordedEvent

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "max_poll_interval_ms": 10_000,
    "session_timeout_ms": 6_000,
    "heartbeat_interval_ms": 1_000,
    "fetch_max_wait_ms": 50,
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "request_timeout_ms": 15_000,
    "metrics_enabled": False,
}
"""Group settings that form a group in seconds (see shared/notes/kafka-broker.md), and a short fetch wait."""

DLQ_SUFFIX = ".dlq"
DATABASE_ERRORS = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.DeadlockDetected,
    StoreUnavailable,
)
CACHE_EVENTS = 1_000_000
"""Events of decoded history kept in memory (about 1 KB each as Python objects): a miss reads the copy again.
A topic interleaves every customer, so a cache smaller than a branch's working set re-reads and refolds
histories on every batch (100,000 at 8,000 customers: 2,100 events/s and a lost group membership)."""
CHUNK_CUSTOMERS = 500
"""Customers of one batch evaluated and written before the cache is trimmed again."""
CONSUMER_TIMEOUTS = ("request_timeout_ms", "bootstrap_timeout_ms")
PROGRESS_EVERY = 10.0


class ConsumerError(TimelineError):
    """The consumer cannot go on as asked."""


class BrokerUnreachable(KafkaError):
    """The group coordinator has been unknown for longer than a request may take (``poll`` itself never fails)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Evaluation:
    """A customer's state as of ``as_of`` (None: not registered), and when to look again."""

    customer_id: str
    state: CustomerState | None
    last_version: int
    last_position: int
    recheck_at: dt.datetime | None


@dataclass
class BatchResult:
    """What one committed transaction did (handed to ``on_commit``)."""

    messages: int
    applied: list[RecordedEvent]
    duplicates: int
    dead_letters: int
    customers: int
    polled_at: float
    """``time.time()`` when the batch's first records were returned by the poll."""
    committed_at: float
    """``time.time()`` just after the database commit."""
    as_of: dt.datetime
    fold_seconds: float = 0.0
    """Time spent computing states (folding and asking) in this batch."""


@dataclass
class ConsumerStats:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    customers: int = 0
    ticks: int = 0
    ticked: int = 0
    failures: int = 0
    errors: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "customers_evaluated": self.customers,
            "ticks": self.ticks,
            "ticked": self.ticked,
            "failures": self.failures,
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "events_per_second": round(self.applied / self.elapsed, 1) if self.elapsed > 0 else None,
            "last_error": self.last_error,
        }


class HistoryCache:
    """Customer histories (by version), least recently used first out, bounded by events held."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._streams: OrderedDict[str, list[RecordedEvent]] = OrderedDict()
        self.memo: dict[str, Any] = {}
        """What a subclass remembers of a customer's last written row; forgotten with the history."""
        self.folds: dict[str, Folded] = {}
        """The last fold of each cached history (reused while the history only grows); forgotten with it."""

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self._streams

    def get(self, customer_id: str) -> list[RecordedEvent]:
        self._streams.move_to_end(customer_id)
        return self._streams[customer_id]

    def put(self, customer_id: str, history: list[RecordedEvent]) -> None:
        self.folds.pop(customer_id, None)
        old = self._streams.pop(customer_id, None)
        self.size += len(history) - (len(old) if old else 0)
        self._streams[customer_id] = history

    def extend(self, customer_id: str, events: Sequence[RecordedEvent]) -> None:
        history = self.get(customer_id)
        ordered = not history or history[-1].version < events[0].version
        history.extend(events)
        if not ordered or any(a.version >= b.version for a, b in zip(events, events[1:], strict=False)):
            history.sort(key=lambda e: e.version)
        self.size += len(events)

    def discard(self, customer_ids: Iterable[str]) -> None:
        for c in customer_ids:
            self.memo.pop(c, None)
            self.folds.pop(c, None)
            old = self._streams.pop(c, None)
            if old:
                self.size -= len(old)

    def trim(self) -> None:
        while self.size > self.limit and len(self._streams) > 1:
            customer_id, old = self._streams.popitem(last=False)
            self.memo.pop(customer_id, None)
            self.folds.pop(customer_id, None)
            self.size -= len(old)

    def clear(self) -> None:
        self._streams.clear()
        self.memo.clear()
        self.folds.clear()
        self.size = 0


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: ProjectingConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Every batch is committed before the next poll: nothing is in flight. Another
        # member may now update those customers, so what we hold of them may go stale.
        self.owner.cache.clear()
        self.owner.rebalances += 1

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner.cache.clear()
        self.owner.rebalances += 1
        try:
            self.owner.seek_to_saved(assigned)
        except GaveUp as exc:  # kafka-python logs and swallows a listener's exceptions: the loop raises it
            self.owner.gave_up = exc
        self.owner.assigned_at = time.time()


class ProjectingConsumer:
    """Kafka → per-customer state → PostgreSQL, exactly once per message. Subclasses write the view."""

    prefix: str = "projecting"
    default_group: str = "timeline-projecting"

    def __init__(
        self,
        db_url: str,
        bootstrap: str,
        topic: str,
        *,
        group: str | None = None,
        policy: Policy | None = None,
        clock: Clock = utcnow,
        max_batch: int = 20_000,
        tick_interval: float = 30.0,
        tick_chunk: int = 2_000,
        dead_letter_topic: str | None = None,
        consumer_config: dict[str, Any] | None = None,
        cache_events: int = CACHE_EVENTS,
        backoff_initial: float = 0.5,
        backoff_max: float = 15.0,
        give_up_after: float | None = None,
        on_commit: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.db_url = db_url
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group or self.default_group
        self.policy = policy or load_policy()
        self.clock = clock
        self.max_batch = max_batch
        self.tick_interval = tick_interval
        self.tick_chunk = tick_chunk
        self.dead_letter_topic = dead_letter_topic or topic + DLQ_SUFFIX
        self.stop_event = threading.Event()
        self.backoff = Backoff(
            log, f"{self.prefix} consumer {self.group}", backoff_initial, backoff_max, give_up_after, self.stop_event
        )
        config = {**CONSUMER_DEFAULTS, **(consumer_config or {})}
        for key in CONSUMER_TIMEOUTS:
            config[key] = int(
                self.backoff.attempt_timeout(config.get(key, CONSUMER_DEFAULTS["request_timeout_ms"]) / 1000) * 1000
            )
        self.consumer_config = config
        self.cache = HistoryCache(cache_events)
        self.on_commit = on_commit
        self.ranks = {level.name: i for i, level in enumerate(self.policy.tier.tiers)}
        self.stats = ConsumerStats()
        self.conn: psycopg.Connection | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._generation: int | None = None
        self._unreachable_since: float | None = None
        self.gave_up: GaveUp | None = None
        self._last_progress = time.monotonic()
        self._dlq_ready = False
        self.rebalances = 0
        self._polled_at = 0.0
        self._gaps: set[str] = set()
        self.assigned_at = 0.0
        """``time.time()`` of the last partition assignment (the end of a group join)."""
        self._unacked_offsets: dict[TopicPartition, OffsetAndMetadata] = {}

    # -- subclass hooks ---------------------------------------------------------------------

    def ddl(self) -> list[str]:
        """The tables of this consumer's view (its bookkeeping tables are created anyway)."""
        return []

    def write(self, cur: psycopg.Cursor, evaluations: list[Evaluation], as_of: dt.datetime) -> None:
        """Write the view rows of these (re-)evaluated customers, inside the batch's transaction."""

    def finished(self, committed: bool) -> None:
        """Called after each transaction of a batch or a tick: committed, or rolled back."""

    # -- database ---------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = readmodel.connect(self.db_url)
            self.conn.autocommit = True
            readmodel.ensure(
                self.conn,
                [*readmodel.consumer_ddl(self.prefix), *readmodel.offsets_ddl(self.prefix), *self.ddl()],
            )
        return self.conn

    def _disconnect(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def saved_offsets(self) -> dict[TopicPartition, int]:
        conn = self.connect()
        rows = conn.execute(
            f'SELECT partition, next_offset FROM {self.prefix}_offsets WHERE "group" = %s AND topic = %s',
            (self.group, self.topic),
        ).fetchall()
        return {TopicPartition(self.topic, p): o for p, o in rows}

    def seek_to_saved(self, partitions: Iterable[TopicPartition]) -> None:
        """Position every partition at the offset the database holds (the start if it holds none)."""
        partitions = list(partitions)
        if not partitions:
            return
        while True:
            try:
                saved = self.saved_offsets()
                break
            except DATABASE_ERRORS as exc:
                self._failed(exc, "reading saved offsets")
                self._disconnect()
                if self.stop_event.is_set():
                    return
        fresh = [tp for tp in partitions if tp not in saved]
        for tp in partitions:
            if tp in saved:
                self._consumer.seek(tp, saved[tp])
        if fresh:
            self._consumer.seek_to_beginning(*fresh)
        log.info(
            "%s %s: assigned %s, resuming at %s",
            self.prefix,
            self.group,
            sorted(tp.partition for tp in partitions),
            {tp.partition: saved.get(tp, 0) for tp in sorted(partitions)},
        )

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self._close_kafka()
        self._disconnect()

    def _close_kafka(self) -> None:
        if self._consumer is not None and self._unacked_offsets:
            try:  # what commit_async has not confirmed yet, once more and waiting (status shows Kafka's lag)
                self._consumer.commit(self._unacked_offsets, timeout_ms=5000)
            except Exception as exc:  # noqa: BLE001 - best effort: the database holds the offsets that count
                log.debug("committing offsets to Kafka on close: %s", exc)
            self._unacked_offsets = {}
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        for client in (consumer, producer):
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # noqa: BLE001 - shutting down anyway
                    log.debug("closing a Kafka client: %s", exc)

    def _ensure_consumer(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                client_id=f"timeline-{self.prefix}-{self.group}",
                max_poll_records=self.max_batch,
                **self.consumer_config,
            )
            self._consumer.subscribe([self.topic], listener=_Listener(self))
        return self._consumer

    def run(
        self, until_caught_up: bool = False, idle_exit: float | None = None, assign_timeout: float = 60.0
    ) -> ConsumerStats:
        """Consume until stopped; or until caught up with every assigned partition; or idle that long.

        ``until_caught_up`` gives up (:class:`ConsumerError`) if no partition is assigned within
        ``assign_timeout`` seconds: the topic probably does not exist.
        """
        self.stats = ConsumerStats()
        self.backoff.succeeded()
        started = time.monotonic()
        self.connect()
        log.info("%s consumer %s: reading %s on %s", self.prefix, self.group, self.topic, self.bootstrap)
        last_message = time.monotonic()
        next_tick = time.monotonic() + (self.tick_interval if self.tick_interval > 0 else float("inf"))
        while not self.stop_event.is_set():
            try:
                consumer = self._ensure_consumer()
                records = self._poll(consumer)
                if self.gave_up:
                    raise self.gave_up
                if records:
                    self._apply(records)
                    last_message = time.monotonic()
                self._check_reachable(consumer, bool(records))
                if time.monotonic() >= next_tick:
                    # One chunk at a time between polls (the group expects a poll every max_poll_interval_ms).
                    more = self.tick(max_chunks=1) >= self.tick_chunk
                    next_tick = time.monotonic() + (0 if more else self.tick_interval)
                self._progress()
                if not records:
                    if until_caught_up and self._caught_up(consumer):
                        break
                    if until_caught_up and time.monotonic() - started > assign_timeout and not consumer.assignment():
                        raise ConsumerError(
                            f"no partition of topic {self.topic!r} was assigned to group {self.group!r} within "
                            f"{assign_timeout:.0f}s: does the topic exist (has the relay run)?"
                        )
                    if idle_exit is not None and time.monotonic() - last_message >= idle_exit:
                        break
            except DATABASE_ERRORS as exc:
                self._failed(exc, "applying a batch")
                self._disconnect()
                self._rewind()
            except KafkaError as exc:
                self._failed(exc, "talking to Kafka")
                self._rewind()
        self._progress(final=True)
        return self.stats

    def _poll(self, consumer: Any) -> list[Any]:
        """One poll, topped up without waiting while a backlog is there (bigger batches, fewer folds)."""
        batch: list[Any] = []
        timeout = 200
        rebalances = self.rebalances
        while len(batch) < self.max_batch:
            polled = consumer.poll(timeout_ms=timeout, max_records=self.max_batch - len(batch))
            got = [r for records in polled.values() for r in records]
            if self.rebalances != rebalances:
                # Positions were just reset to the saved offsets; what was read before may not be ours.
                batch, rebalances = [], self.rebalances
            if not got:
                break
            if not batch:
                self._polled_at = time.time()
            batch.extend(got)
            timeout = 0
        return batch

    def _check_reachable(self, consumer: Any, progressed: bool) -> None:
        """Count a success, or raise :class:`BrokerUnreachable` once the coordinator has been unknown too long."""
        coordinator = getattr(consumer, "_coordinator", None)  # kafka-python has no public way to ask
        unknown = not progressed and coordinator is not None and coordinator.coordinator_unknown()
        if not unknown:
            self._unreachable_since = None
            self.backoff.succeeded()
            return
        now = time.monotonic()
        self._unreachable_since = self._unreachable_since or now
        waited = now - self._unreachable_since
        if waited >= self._attempt_seconds:
            raise BrokerUnreachable(f"no group coordinator on {self.bootstrap} for {waited:.1f}s")

    @property
    def _attempt_seconds(self) -> float:
        return self.consumer_config["request_timeout_ms"] / 1000

    def _caught_up(self, consumer: Any) -> bool:
        assigned = consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None or consumer.position(tp) < highwater:
                return False
        return True

    def _rewind(self) -> None:
        """After a failed batch: back to the offsets the database holds (the batch is redone)."""
        self.cache.clear()
        if self._consumer is None:
            return
        try:
            assigned = self._consumer.assignment()
            if assigned:
                self.seek_to_saved(assigned)
        except (KafkaError, *DATABASE_ERRORS) as exc:
            # Cannot position: start over with a new consumer (it seeks on assignment).
            log.debug("rewinding: %s", exc)
            self._close_kafka()

    def _failed(self, exc: BaseException, doing: str) -> None:
        """Count the failure and wait before the retry (:class:`GaveUp` once a bounded run is out of time)."""
        self.stats.failures += 1
        self.stats.last_error = describe(exc)
        self.backoff.failed(exc, doing, attempt=self._attempt_seconds)

    def _progress(self, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            s = self.stats
            log.info(
                "%s consumer %s: %s %d events (%d repeats, %d dead letters) in %d batches (%.0f events/s)",
                self.prefix,
                self.group,
                "stopped after" if final else "applied",
                s.applied,
                s.duplicates,
                s.dead_letters,
                s.batches,
                s.applied / max(s.elapsed, 1e-9),
            )

    # -- one batch --------------------------------------------------------------------------

    def _apply(self, records: list[Any]) -> BatchResult:
        conn = self.connect()
        as_of = self.clock()
        events: dict[str, tuple[RecordedEvent, bytes]] = {}
        poison: list[tuple[Any, str]] = []
        next_offsets: dict[TopicPartition, int] = {}
        max_position: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            next_offsets[tp] = max(next_offsets.get(tp, 0), r.offset + 1)
            try:
                if r.value is None:
                    raise NotACloudEvent("no value (a tombstone)")
                event = parse(r.value)
            except NotACloudEvent as exc:
                poison.append((r, str(exc)))
                continue
            events.setdefault(str(event.event_id), (event, r.value))
            max_position[tp] = max(max_position.get(tp, 0), event.position)
        if poison:
            self._dead_letter(poison)  # acknowledged before the offsets that skip them are saved
        try:
            with conn.transaction():
                self._lock_shared(conn)
                with conn.cursor() as cur:
                    fresh = self._insert_events(cur, events)
                    del events
                    touched: dict[str, list[RecordedEvent]] = {}
                    for event in fresh:
                        touched.setdefault(event.customer_id, []).append(event)
                    evaluated, fold_seconds = self._evaluate_touched(cur, touched, as_of)
                    self._save_offsets(cur, next_offsets, max_position)
                    if poison:
                        cur.executemany(
                            f"INSERT INTO {self.prefix}_dead_letters"
                            ' ("group", topic, partition, "offset", reason, dead_letter_topic)'
                            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            [
                                (self.group, r.topic, r.partition, r.offset, why, self.dead_letter_topic)
                                for r, why in poison
                            ],
                        )
        except BaseException:
            self.cache.clear()  # it may hold events the rolled-back transaction did not keep
            self.finished(False)
            raise
        committed_at = time.time()
        self.finished(True)
        self.cache.trim()
        result = BatchResult(
            messages=len(records),
            applied=fresh,
            duplicates=len(records) - len(poison) - len(fresh),
            dead_letters=len(poison),
            customers=evaluated,
            polled_at=self._polled_at or committed_at,
            committed_at=committed_at,
            as_of=as_of,
            fold_seconds=fold_seconds,
        )
        s = self.stats
        s.messages += result.messages
        s.applied += len(fresh)
        s.duplicates += result.duplicates
        s.dead_letters += result.dead_letters
        s.customers += result.customers
        s.batches += 1
        if self.on_commit:
            self.on_commit(result)
        self._commit_kafka(next_offsets)
        return result

    def _lock_shared(self, conn: psycopg.Connection) -> None:
        """Keep a rebuild's swap out of this transaction; drop the cache if a rebuild swapped since the last one."""
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s, 0)", (readmodel.SWAP_LOCK,))
        # A statement of its own: its snapshot is taken after the lock is granted, so it sees a swap just committed.
        generation = conn.execute(f"SELECT generation FROM {self.prefix}_meta").fetchone()[0]
        if generation != self._generation:
            self.cache.clear()
            self._generation = generation

    def _insert_events(
        self, cur: psycopg.Cursor, events: dict[str, tuple[RecordedEvent, bytes]]
    ) -> list[RecordedEvent]:
        """Insert the batch's events into the copy; the ones not there before, in the batch's order."""
        if not events:
            return []
        items = list(events.values())
        cur.execute(
            f"INSERT INTO {self.prefix}_events (event_id, customer_id, version, position, value)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::bigint[], %s::bigint[], %s::bytea[])"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            (
                [e.event_id for e, _ in items],
                [e.customer_id for e, _ in items],
                [e.version for e, _ in items],
                [e.position for e, _ in items],
                [v for _, v in items],
            ),
        )
        inserted = {str(row[0]) for row in cur.fetchall()}
        return [e for e, _ in items if str(e.event_id) in inserted]

    def _evaluate_touched(
        self, cur: psycopg.Cursor, touched: dict[str, list[RecordedEvent]], as_of: dt.datetime
    ) -> tuple[int, float]:
        """Evaluate and write the touched customers, ``CHUNK_CUSTOMERS`` at a time; (how many, seconds folding).

        All in the batch's transaction, but the cache is trimmed after each chunk: a catch-up batch that
        touches every customer holds at most the cache's bound of history, not the whole history.
        """
        customers = sorted(touched)
        evaluated, fold_seconds = 0, 0.0
        for start in range(0, len(customers), CHUNK_CUSTOMERS):
            chunk = customers[start : start + CHUNK_CUSTOMERS]
            self._load_histories(cur, {c: touched[c] for c in chunk})
            folding = time.perf_counter()
            evaluations = self._evaluate(chunk, as_of)
            fold_seconds += time.perf_counter() - folding
            self.write(cur, evaluations, as_of)
            self._save_streams(cur, evaluations)
            evaluated += len(evaluations)
            self.cache.trim()
        return evaluated, fold_seconds

    def _load_histories(self, cur: psycopg.Cursor, touched: dict[str, list[RecordedEvent]]) -> None:
        """Bring every touched customer's whole history into the cache (new events included)."""
        missing = [c for c in touched if c not in self.cache]
        for c, new in touched.items():
            if c in self.cache:
                self.cache.extend(c, sorted(new, key=lambda e: e.version))
        if missing:
            for c, history in self.read_histories(cur, missing).items():
                self.cache.put(c, history)

    def read_histories(self, cur: psycopg.Cursor, customer_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        cur.execute(
            f"SELECT customer_id, value FROM {self.prefix}_events WHERE customer_id = ANY(%s)"
            " ORDER BY customer_id, version",
            (list(customer_ids),),
        )
        histories: dict[str, list[RecordedEvent]] = {c: [] for c in customer_ids}
        for customer_id, value in cur:
            histories[customer_id].append(parse(bytes(value)))
        return histories

    def _evaluate(self, customer_ids: Sequence[str], as_of: dt.datetime) -> list[Evaluation]:
        out = []
        for c in customer_ids:
            history = self.cache.get(c) if c in self.cache else []
            if not history:
                continue
            if history[-1].version != len(history) and c not in self._gaps:
                self._gaps.add(c)  # at-least-once delivery in order per customer should make this impossible
                log.warning(
                    "%s consumer %s: customer %s has %d events up to version %d: some never arrived",
                    self.prefix,
                    self.group,
                    c,
                    len(history),
                    history[-1].version,
                )
            try:
                folded = self.cache.folds[c] = fold(history, self.policy, self.cache.folds.get(c))
                out.append(evaluate(c, history, self.policy, as_of, folded))
            except Exception as exc:  # noqa: BLE001 - one customer's bad history must not stop the others
                self.stats.errors += 1
                self.stats.last_error = f"{c}: {type(exc).__name__}: {exc}"
                log.exception(
                    "%s consumer %s: cannot evaluate customer %s; its row is left as it was",
                    *(self.prefix, self.group, c),
                )
        return out

    def _save_streams(self, cur: psycopg.Cursor, evaluations: list[Evaluation]) -> None:
        if not evaluations:
            return
        cur.execute(
            f"INSERT INTO {self.prefix}_streams (customer_id, last_version, last_position, recheck_at)"
            " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::timestamptz[])"
            " ON CONFLICT (customer_id) DO UPDATE SET last_version = excluded.last_version,"
            " last_position = excluded.last_position, recheck_at = excluded.recheck_at",
            (
                [e.customer_id for e in evaluations],
                [e.last_version for e in evaluations],
                [e.last_position for e in evaluations],
                [e.recheck_at for e in evaluations],
            ),
        )

    def _save_offsets(
        self, cur: psycopg.Cursor, next_offsets: dict[TopicPartition, int], max_position: dict[TopicPartition, int]
    ) -> None:
        cur.executemany(
            f'INSERT INTO {self.prefix}_offsets ("group", topic, partition, next_offset, max_position)'
            ' VALUES (%s, %s, %s, %s, %s) ON CONFLICT ("group", topic, partition) DO UPDATE SET'
            f" next_offset = excluded.next_offset, max_position = greatest({self.prefix}_offsets.max_position,"
            " excluded.max_position), updated_at = now()",
            [
                (self.group, tp.topic, tp.partition, o, max_position.get(tp, 0))
                for tp, o in sorted(next_offsets.items())
            ],
        )

    def _commit_kafka(self, next_offsets: dict[TopicPartition, int]) -> None:
        """Tell Kafka too (for lag tooling only: the database's offsets are the ones that count)."""
        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in next_offsets.items()}
        self._unacked_offsets.update(offsets)

        def done(committed: Any, response: Any) -> None:
            if not isinstance(response, Exception):
                for tp, meta in committed.items():
                    if self._unacked_offsets.get(tp) == meta:
                        del self._unacked_offsets[tp]

        try:
            self._consumer.commit_async(offsets, callback=done)
        except Exception as exc:  # noqa: BLE001 - best effort by design
            log.debug("committing offsets to Kafka: %s", exc)

    def _dead_letter(self, poison: list[tuple[Any, str]]) -> None:
        """Send each poison message, untouched, to the dead-letter topic with why; wait for the acks."""
        producer = self._ensure_producer()
        self._ensure_dlq_topic()
        futures = []
        for r, reason in poison:
            headers = [
                *[(k, v) for k, v in (r.headers or []) if not k.startswith("x-dlq-")],
                ("x-dlq-reason", reason.encode()),
                ("x-dlq-topic", r.topic.encode()),
                ("x-dlq-partition", str(r.partition).encode()),
                ("x-dlq-offset", str(r.offset).encode()),
                ("x-dlq-group", self.group.encode()),
            ]
            futures.append(producer.send(self.dead_letter_topic, key=r.key, value=r.value, headers=headers))
            log.warning(
                "%s consumer %s: %s/%d offset %d is not a CloudEvent (%s): sent to %s",
                self.prefix,
                self.group,
                r.topic,
                r.partition,
                r.offset,
                reason,
                self.dead_letter_topic,
            )
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=0)  # raises if not acknowledged: the batch is redone

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                client_id=f"timeline-{self.prefix}-{self.group}-dlq",
                metrics_enabled=False,
            )
        return self._producer

    def _ensure_dlq_topic(self) -> None:
        if self._dlq_ready:
            return
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"timeline-{self.prefix}-admin")
        try:
            if self.dead_letter_topic not in admin.list_topics():
                try:
                    admin.create_topics([NewTopic(self.dead_letter_topic, 1, 1)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
        self._dlq_ready = True

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: dt.datetime | None = None, max_chunks: int | None = None) -> int:
        """Re-evaluate every customer whose ``recheck_at`` has passed (in chunks of ``tick_chunk``); how many were."""
        conn = self.connect()
        now = now or self.clock()
        done = 0
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            chunks += 1
            try:
                with conn.transaction():
                    self._lock_shared(conn)
                    with conn.cursor() as cur:
                        # Rows another transaction (the consumer) holds are its to re-evaluate.
                        due = [
                            row[0]
                            for row in cur.execute(
                                f"SELECT customer_id FROM {self.prefix}_streams WHERE recheck_at <= %s"
                                " ORDER BY customer_id LIMIT %s FOR UPDATE SKIP LOCKED",
                                (now, self.tick_chunk),
                            ).fetchall()
                        ]
                        if not due:
                            break
                        for start in range(0, len(due), CHUNK_CUSTOMERS):
                            self._reevaluate(cur, due[start : start + CHUNK_CUSTOMERS], now)
            except BaseException:
                self.cache.clear()
                self.finished(False)
                raise
            self.finished(True)
            done += len(due)
            self.cache.trim()
            if len(due) < self.tick_chunk:
                break
        self.stats.ticks += 1
        self.stats.ticked += done
        if done:
            log.info("%s: re-evaluated %d customer(s) whose next change had come by %s", self.prefix, done, now)
        return done

    def _reevaluate(self, cur: psycopg.Cursor, customer_ids: list[str], now: dt.datetime) -> None:
        """Evaluate these customers again from the copy (the truth: another process may have added events)."""
        self.cache.discard(customer_ids)
        for c, history in self.read_histories(cur, customer_ids).items():
            self.cache.put(c, history)
        evaluations = self._evaluate(customer_ids, now)
        self.write(cur, evaluations, now)
        self._save_streams(cur, evaluations)
        stuck = [e.customer_id for e in evaluations if e.recheck_at is not None and e.recheck_at <= now]
        if stuck:  # never loop on a customer whose instant does not move
            cur.execute(
                f"UPDATE {self.prefix}_streams SET recheck_at = NULL WHERE customer_id = ANY(%s)",
                (stuck,),
            )
        self.cache.trim()


def evaluate(
    customer_id: str,
    history: Sequence[RecordedEvent],
    policy: Policy,
    as_of: dt.datetime,
    folded: Folded | None = None,
) -> Evaluation:
    """The state as of ``as_of`` (as known then), and the next instant at which it must be looked at again.

    ``folded``: the fold of this very history, when the caller keeps one.
    """
    try:
        if folded is None:
            state: CustomerState | None = customer_state(history, policy, as_of, as_of)
        else:
            state = folded.state(history, policy, as_of, as_of)
    except UnknownCustomer:
        state = None
    if folded is not None and folded.occurred <= as_of and folded.recorded <= as_of:
        later = []
    else:
        later = [e.occurred_at for e in history if e.occurred_at > as_of]
        later += [e.recorded_at for e in history if e.recorded_at > as_of]
    if state is not None and state.next_change_at is not None:
        later.append(state.next_change_at)
    return Evaluation(
        customer_id,
        state,
        max(map(_version, history)),
        max(map(_position, history)),
        min(later) if later else None,
    )


_version = attrgetter("version")
_position = attrgetter("position")
