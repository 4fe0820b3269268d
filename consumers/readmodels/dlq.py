"""The dead-letter topic: a message that is not a CloudEvent goes there untouched, with the reason in a header."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"


class DeadLetters:
    """Sends poison messages to ``<topic>.dlq`` (created with one partition if missing) and waits for the acks."""

    def __init__(self, bootstrap: str, topic: str, group: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic + DLQ_SUFFIX
        self.group = group
        self.prefix = prefix
        self._producer: Any = None
        self._ready = False

    def send(self, poison: list[tuple[Any, str]]) -> None:
        """Send each (record, reason), untouched, with why; raise if any is not acknowledged (the batch is redone)."""
        producer = self._ensure_producer()
        self._ensure_topic()
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
            futures.append(producer.send(self.topic, key=r.key, value=r.value, headers=headers))
            log.warning(
                "%s consumer %s: %s/%d offset %d is not a CloudEvent (%s): sent to %s",
                *(self.prefix, self.group, r.topic, r.partition, r.offset, reason, self.topic),
            )
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=0)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close()
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.debug("closing the dead-letter producer: %s", exc)

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

    def _ensure_topic(self) -> None:
        if self._ready:
            return
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"timeline-{self.prefix}-admin")
        try:
            if self.topic not in admin.list_topics():
                try:
                    admin.create_topics([NewTopic(self.topic, 1, 1)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
        self._ready = True
