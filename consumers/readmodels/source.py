"""The Kafka side of a read model: the group member, its polls, where it reads from, and Kafka's lag offsets.

On partition assignment the member seeks to the offsets saved in the database
(``on_assigned``); Kafka's own committed offsets are written after the
database commit, best effort, only so that ``timeline status`` and Kafka
tooling can show the group's lag. A paused or partitioned broker does not
make ``poll`` fail, it just returns nothing: so the group coordinator being
unknown for longer than one request timeout counts as a failure
(:class:`BrokerUnreachable`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)

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
"""Group settings that form a group in seconds, and a short fetch wait.

``max_poll_interval_ms`` is also the rebalance timeout a join waits out, so it stays short; what keeps the loop
under it is that no step between two polls grows with the history: a batch evaluates at most the customers the
cache holds and ``CATCH_UP_CHUNK`` others (:mod:`.projector`), a catch-up stops after ``CATCH_UP_SECONDS``, and
the consumer's timer re-evaluates one ``CATCH_UP_CHUNK`` of due customers per loop. The longest step left is a
full poll behind a backlog: its messages inserted into the copy, marked pending, the cached customers extended."""

CONSUMER_TIMEOUTS = ("request_timeout_ms", "bootstrap_timeout_ms")
"""The client timeouts a bounded run shortens to fit its deadline."""


class BrokerUnreachable(KafkaError):
    """The group coordinator has been unknown for longer than a request may take (``poll`` itself never fails)."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: KafkaSource) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.owner.rebalances += 1
        self.owner.on_revoked()

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner.rebalances += 1
        self.owner.on_assigned(assigned)
        self.owner.assigned_at = time.time()


class KafkaSource:
    """One member of ``group`` subscribed to ``topic``; created on first use, thrown away after a failure."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        client_id: str,
        max_batch: int,
        config: dict[str, Any],
        on_assigned: Callable[[list[TopicPartition]], None],
        on_revoked: Callable[[], None],
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.client_id = client_id
        self.max_batch = max_batch
        self.config = config
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.rebalances = 0
        self.assigned_at = 0.0
        """``time.time()`` of the last partition assignment (the end of a group join)."""
        self.polled_at = 0.0
        """``time.time()`` when the last batch's first records were returned."""
        self._consumer: Any = None
        self._unreachable_since: float | None = None
        self._unacked_offsets: dict[TopicPartition, OffsetAndMetadata] = {}

    @property
    def attempt_seconds(self) -> float:
        """How long one request to the broker may take."""
        return self.config["request_timeout_ms"] / 1000

    @property
    def started(self) -> bool:
        return self._consumer is not None

    def consumer(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                client_id=self.client_id,
                max_poll_records=self.max_batch,
                **self.config,
            )
            self._consumer.subscribe([self.topic], listener=_Listener(self))
        return self._consumer

    def poll(self) -> list[Any]:
        """One poll, topped up without waiting while a backlog is there (bigger batches, fewer folds)."""
        consumer = self.consumer()
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
                self.polled_at = time.time()
            batch.extend(got)
            timeout = 0
        return batch

    def check_reachable(self, progressed: bool) -> bool:
        """Whether the broker answers; raise :class:`BrokerUnreachable` once its coordinator has been unknown
        for longer than a request may take."""
        coordinator = getattr(self._consumer, "_coordinator", None)  # kafka-python has no public way to ask
        if progressed or coordinator is None or not coordinator.coordinator_unknown():
            self._unreachable_since = None
            return True
        now = time.monotonic()
        self._unreachable_since = self._unreachable_since or now
        waited = now - self._unreachable_since
        if waited >= self.attempt_seconds:
            raise BrokerUnreachable(f"no group coordinator on {self.bootstrap} for {waited:.1f}s")
        return False

    def assignment(self) -> set[TopicPartition]:
        return self.consumer().assignment()

    def caught_up(self) -> bool:
        """Every assigned partition has been read up to its high watermark (False while none is assigned)."""
        consumer = self.consumer()
        assigned = consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None or consumer.position(tp) < highwater:
                return False
        return True

    def lags(self) -> dict[TopicPartition, int]:
        """High watermark minus position of each assigned partition the last fetch told the watermark of."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lags = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = consumer.position(tp, timeout_ms=0) if highwater is not None else None
            if position is not None:
                lags[tp] = max(highwater - position, 0)
        return lags

    def seek(self, partitions: list[TopicPartition], saved: dict[TopicPartition, int]) -> None:
        """Position each partition at its saved offset, or at the start of the log if none is saved."""
        fresh = [tp for tp in partitions if tp not in saved]
        for tp in partitions:
            if tp in saved:
                self._consumer.seek(tp, saved[tp])
        if fresh:
            self._consumer.seek_to_beginning(*fresh)

    def commit(self, next_offsets: dict[TopicPartition, int]) -> None:
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

    def close(self) -> None:
        if self._consumer is not None and self._unacked_offsets:
            try:  # what commit_async has not confirmed yet, once more and waiting (status shows Kafka's lag)
                self._consumer.commit(self._unacked_offsets, timeout_ms=5000)
            except Exception as exc:  # noqa: BLE001 - best effort: the database holds the offsets that count
                log.debug("committing offsets to Kafka on close: %s", exc)
            self._unacked_offsets = {}
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.debug("closing a Kafka client: %s", exc)
