"""A read model's consumer group: the poll loop, its failures and retries, and how it stops.

- Each poll batch is applied in one database transaction (:mod:`.projector`);
  one polled behind a backlog (a full poll, or ``BEHIND`` messages left) leaves the customers the cache does not hold
  pending, evaluated once the polls come back short (``until_caught_up``
  also waits for them);
  on partition assignment the member seeks to the offsets saved in the
  database (a partition it never applied starts at the beginning), so a
  consumer killed anywhere — before, during or after that commit — resumes
  exactly after the last batch the view contains.
- A message that is not a CloudEvent (invalid JSON, say) goes to the
  dead-letter topic ``<topic>.dlq`` (:mod:`.dlq`) with the reason in a header,
  is recorded in ``{prefix}_dead_letters``, and counts as done.
- Failures (broker or database away) back off and retry
  (:mod:`timeline.consumers.backoff`): for ever in a long-running consumer,
  one warning per retry; a bounded run (``give_up_after``, the CLI's
  ``--once``) raises :class:`timeline.consumers.backoff.GaveUp` once it has made
  no progress for that long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from kafka import TopicPartition
from kafka.errors import KafkaError

from timeline.consumers.backoff import Backoff, GaveUp, describe, describe_kafka
from timeline.consumers.metrics import ConsumerMetrics
from timeline.consumers.readmodels.dlq import DeadLetters
from timeline.consumers.readmodels.evaluation import Clock, utcnow
from timeline.consumers.readmodels.projector import CATCH_UP_CHUNK, Batch, Projector
from timeline.consumers.readmodels.source import CONSUMER_DEFAULTS, CONSUMER_TIMEOUTS, KafkaSource
from timeline.consumers.readmodels.stats import BatchResult, ConsumerStats
from timeline.domain.errors import StoreUnavailable, TimelineError
from timeline.domain.policy import Policy

log = logging.getLogger(__name__)

DATABASE_ERRORS = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.DeadlockDetected,
    StoreUnavailable,
)
PROGRESS_EVERY = 10.0
LAG_EVERY = 1.0
"""Seconds between two readings of the partitions' lag for the metrics."""
BEHIND = 1_000
"""Messages still on the assigned partitions after a poll from which the consumer counts as behind a backlog."""
ASSIGN_TIMEOUT = 60.0
"""Seconds a run ``until_caught_up`` waits for a partition before it concludes the topic does not exist."""


class ConsumerError(TimelineError):
    """The consumer cannot go on as asked."""


class ProjectingConsumer(Projector):
    """Kafka → per-customer state → PostgreSQL, exactly once per message. Subclasses write the view."""

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
        consumer_config: dict[str, Any] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 15.0,
        give_up_after: float | None = None,
        on_commit: Callable[[BatchResult], None] | None = None,
        store_url: str | None = None,
    ) -> None:
        super().__init__(db_url, topic, group=group, policy=policy, clock=clock, store_url=store_url)
        self.bootstrap = bootstrap
        self.tick_interval = tick_interval
        self.on_commit = on_commit
        self.stop_event = threading.Event()
        self.backoff = Backoff(
            log, f"{self.prefix} consumer {self.group}", backoff_initial, backoff_max, give_up_after, self.stop_event
        )
        config = {**CONSUMER_DEFAULTS, **(consumer_config or {})}
        for key in CONSUMER_TIMEOUTS:
            config[key] = int(
                self.backoff.attempt_timeout(config.get(key, CONSUMER_DEFAULTS["request_timeout_ms"]) / 1000) * 1000
            )
        self.source = KafkaSource(
            bootstrap,
            topic,
            self.group,
            f"timeline-{self.prefix}-{self.group}",
            max_batch,
            config,
            on_assigned=self._assigned,
            on_revoked=self._revoked,
        )
        self.metrics = ConsumerMetrics(self.prefix, self.group, topic)
        self._cache_seen = (0, 0)
        self._lag_read = 0.0
        self.dead_letters = DeadLetters(bootstrap, topic, self.group, self.prefix)
        self.gave_up: GaveUp | None = None
        self._last_progress = time.monotonic()
        self._behind = False

    def _revoked(self) -> None:
        self.cache.clear()
        self.metrics.revoked()

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        # Every batch is committed before the next poll: nothing is in flight. Another
        # member may have updated those customers, so what we hold of them may be stale.
        self.cache.clear()
        self.pending = True  # the partitions' previous member may have left customers pending
        try:
            self.seek_to_saved(partitions)
        except GaveUp as exc:  # kafka-python logs and swallows a listener's exceptions: the loop raises it
            self.gave_up = exc

    def seek_to_saved(self, partitions: list[TopicPartition]) -> None:
        """Position every partition at the offset the database holds (the start if it holds none)."""
        if not partitions:
            return
        while True:
            try:
                saved = self.saved_offsets()
                break
            except DATABASE_ERRORS as exc:
                self._failed(exc, "reading saved offsets")
                self.disconnect()
                if self.stop_event.is_set():
                    return
        self.source.seek(partitions, saved)
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
        self.disconnect()

    def _close_kafka(self) -> None:
        self.source.close()
        self.dead_letters.close()

    def run(self, until_caught_up: bool = False, idle_exit: float | None = None) -> ConsumerStats:
        """Consume until stopped; or until caught up with every assigned partition; or idle that long.

        ``until_caught_up`` gives up (:class:`ConsumerError`) if no partition is assigned for
        ``ASSIGN_TIMEOUT`` seconds (from the start, or since partitions were last held): the topic probably does
        not exist.
        """
        self.stats = ConsumerStats()
        self.backoff.succeeded()
        self.connect()
        log.info("%s consumer %s: reading %s on %s", self.prefix, self.group, self.topic, self.bootstrap)
        last_message = assigned_seen = time.monotonic()
        next_tick = time.monotonic() + (self.tick_interval if self.tick_interval > 0 else float("inf"))
        while not self.stop_event.is_set():
            try:
                records = self.source.poll()
                if self.gave_up:
                    raise self.gave_up
                self._behind = False
                if records:
                    self._apply(records)
                    last_message = time.monotonic()
                if self.pending and not self._behind:
                    self.catch_up()  # no longer behind: evaluate what the backlog left pending
                if self.source.check_reachable(bool(records)):
                    self.backoff.succeeded()
                if time.monotonic() >= next_tick:
                    # One catch-up chunk at a time between polls (the group expects a poll every max_poll_interval_ms).
                    more = self.tick(max_chunks=1, pending=False, chunk=CATCH_UP_CHUNK) >= CATCH_UP_CHUNK
                    next_tick = time.monotonic() + (0 if more else self.tick_interval)
                self._measure(final=False)
                self._progress()
                if records or self.source.assignment():
                    assigned_seen = time.monotonic()
                if not records and not self.pending:
                    if until_caught_up and self.source.caught_up():
                        break
                    if until_caught_up and time.monotonic() - assigned_seen > ASSIGN_TIMEOUT:
                        raise ConsumerError(
                            f"no partition of topic {self.topic!r} was assigned to group {self.group!r} within "
                            f"{ASSIGN_TIMEOUT:.0f}s: does the topic exist (has the relay run)?"
                        )
                    if idle_exit is not None and time.monotonic() - last_message >= idle_exit:
                        break
            except DATABASE_ERRORS as exc:
                self._failed(exc, "applying a batch")
                self.disconnect()
                self._rewind()
            except KafkaError as exc:
                self._failed(exc, "talking to Kafka")
                self._rewind()
        self._measure(final=True)
        self._progress(final=True)
        return self.stats

    def _apply(self, records: list[Any]) -> BatchResult:
        batch = Batch.of(records)
        if batch.poison:
            self.dead_letters.send(batch.poison)  # acknowledged before the offsets that skip them are saved
        next_offsets = batch.next_offsets
        behind = len(records) >= self.source.max_batch or sum(self.source.lags().values()) >= BEHIND
        self._behind = behind
        result = self.apply(batch, self.source.polled_at, behind=behind)
        self.metrics.batch(len(result.applied), result.duplicates, result.dead_letters,
                           result.committed_at - result.polled_at)  # fmt: skip
        if self.on_commit:
            self.on_commit(result)
        self.source.commit(next_offsets)
        return result

    def _rewind(self) -> None:
        """After a failed batch: back to the offsets the database holds (the batch is redone)."""
        self.cache.clear()
        if not self.source.started:
            return
        try:
            assigned = self.source.assignment()
            if assigned:
                self.seek_to_saved(list(assigned))
        except (KafkaError, *DATABASE_ERRORS) as exc:
            # Cannot position: start over with a new consumer (it seeks on assignment).
            log.debug("rewinding: %s", exc)
            self._close_kafka()

    def _failed(self, exc: BaseException, doing: str) -> None:
        """Count the failure and wait before the retry (:class:`GaveUp` once a bounded run is out of time)."""
        attempt = self.source.attempt_seconds
        self.stats.failures += 1
        self.metrics.failures.inc()
        self.stats.last_error = describe_kafka(exc, self.bootstrap, attempt) if isinstance(exc, KafkaError) else None
        self.stats.last_error = self.stats.last_error or describe(exc)
        self.backoff.failed(exc, doing, attempt=attempt, why=self.stats.last_error)

    def _measure(self, final: bool) -> None:
        """Bring the metrics up to date: the cache's counts after every batch, the lag at most every second."""
        hits, misses = self.cache.hits, self.cache.misses
        self.metrics.cache(hits - self._cache_seen[0], misses - self._cache_seen[1])
        self._cache_seen = (hits, misses)
        now = time.monotonic()
        if (final or now - self._lag_read >= LAG_EVERY) and self.source.started:
            self._lag_read = now
            try:
                self.metrics.lag(self.source.lags())
            except KafkaError as exc:  # the next reading will do; the poll loop deals with the broker
                log.debug("reading the lag: %s", exc)

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
