"""The relay's Kafka producer: tuned for bulk, a partitioner that remembers keys, a close that really closes."""

from __future__ import annotations

import logging
from typing import Any

from kafka.partitioner.default import DefaultPartitioner

log = logging.getLogger(__name__)


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


def fast_crc_available() -> bool:
    """kafka-python checksums every record batch; without the ``crc32c`` package it does so in pure Python."""
    try:
        from kafka.record import util

        return util.crc32c_c is not None  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return False


def close_producer(producer: Any, timeout: float) -> None:
    """Close the producer; after a failure, abandon whatever it still holds.

    kafka-python's ``close`` flushes first and, if that times out, raises
    before stopping its sender thread, which would then go on retrying old
    messages next to the new producer's. So the sender is force-closed here.
    """
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
