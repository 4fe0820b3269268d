"""Ingest throughput on PostgreSQL, side by side with the library and a raw COPY.

Run:  .venv/bin/python bench/ingest_bench.py --customers 8000 --years 3 --repeat 3

For one generated branch history (about 1,000,000 events at 8,000 customers
over 3 years) it measures, each in a fresh database of the same server and in
the same run:

- timeline: ``timeline ingest`` with every acceptance check on, in batches;
- library, 1 per save: the eventsourcing library's plain ``Application.save``
  with one event per call (on a sample: it is slow);
- library, 100 per save: the same with 100 events per call;
- raw COPY: the very rows timeline stored, copied into a bare table (the
  practical ceiling);

plus the latency of single-event ingest (p50/p99). Figures are medians of
``--repeat`` runs; ratios are against raw COPY of the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from eventsourcing.domain import Aggregate, event

sys.path.insert(0, str(Path(__file__).parent))

from common import KEK, fresh_db, generated_history  # noqa: E402  (also tunes GC as the CLI does)

from timeline.application.jsonl import read_lines
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.store import open_store


def bench_timeline(path: Path, batch_size: int) -> tuple[float, int, str, Callable[[], None]]:
    url, drop = fresh_db()
    engine = Engine(open_store(url), KeyWrapper(KEK))
    ingestor = engine.ingestor(batch_size=batch_size)
    start = time.perf_counter()
    accepted = rejected = 0
    with path.open("rb") as fh:
        for outcome in ingestor.ingest(read_lines(fh)):
            if outcome.status == "accepted":
                accepted += 1
            elif outcome.status == "rejected":
                rejected += 1
    elapsed = time.perf_counter() - start
    engine.close()
    if rejected:
        print(f"  warning: {rejected} generated events were rejected", file=sys.stderr)
    return accepted / elapsed, accepted, url, drop


def bench_copy(source_url: str) -> float:
    with psycopg.connect(source_url) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM timeline_events ORDER BY notification_id"
        ).fetchall()
    url, drop = fresh_db()
    try:
        with psycopg.connect(url) as conn:
            conn.execute(
                "CREATE TABLE bare (originator_id text, originator_version bigint, topic text, state bytea, "
                "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            )
            conn.commit()
            start = time.perf_counter()
            with conn.cursor().copy("COPY bare (originator_id, originator_version, topic, state) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            return len(rows) / (time.perf_counter() - start)
    finally:
        drop()


class Timeline(Aggregate):
    """One customer's events as a plain library aggregate: what the library does without timeline."""

    @event("Recorded")
    def record(self, payload: str) -> None:
        pass


def bench_library(path: Path, sample: int, per_save: int) -> float:
    """The eventsourcing library's own Application.save, one aggregate per customer."""
    from eventsourcing.application import Application

    url, drop = fresh_db()
    info = psycopg.conninfo.conninfo_to_dict(url)
    app = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": info["dbname"],
            "POSTGRES_HOST": info.get("host", "127.0.0.1"),
            "POSTGRES_PORT": str(info.get("port", 5432)),
            "POSTGRES_USER": info.get("user", "postgres"),
            "POSTGRES_PASSWORD": info.get("password", ""),
        }
    )
    try:
        lines = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                lines.append(line)
                if len(lines) >= sample:
                    break
        aggregates: dict[str, Timeline] = {}
        pending: list[Timeline] = []
        start = time.perf_counter()
        for line in lines:
            customer = json.loads(line)["customer_id"]
            agg = aggregates.get(customer)
            if agg is None:
                agg = aggregates[customer] = Timeline()
            agg.record(line)
            pending.append(agg)
            if len(pending) >= per_save:
                app.save(*{agg.id: agg for agg in pending}.values())
                pending = []
        if pending:
            app.save(*{agg.id: agg for agg in pending}.values())
        return len(lines) / (time.perf_counter() - start)
    finally:
        app.close()
        drop()


def bench_single_latency(samples: int) -> tuple[float, float]:
    """Latency of one event per call: registration then visits, each its own transaction."""
    url, drop = fresh_db()
    engine = Engine(open_store(url), KeyWrapper(KEK))
    ingestor = engine.ingestor()
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    try:
        ingestor.ingest_one(_registration(base))
        timings = []
        for i in range(samples):
            at = (base + dt.timedelta(minutes=i + 1)).isoformat()
            event = {
                "type": "visit.recorded",
                "customer_id": "B1",
                "occurred_at": at,
                "data": {"channel": "phone", "purpose": "call"},
            }
            start = time.perf_counter()
            outcome = ingestor.ingest_one(event)
            timings.append((time.perf_counter() - start) * 1000)
            assert outcome.status == "accepted", outcome
        timings.sort()
        return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]
    finally:
        engine.close()
        drop()


def _registration(at: dt.datetime) -> dict:
    return {
        "type": "customer.registered",
        "customer_id": "B1",
        "occurred_at": at.isoformat(),
        "data": {
            "name": "基准",
            "birth_date": "1980-01-01",
            "phone": "13800000000",
            "branch_id": "BR1",
            "relationship_manager": "RM1",
            "segment": "individual",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=8000)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--library-sample", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=1000)
    args = parser.parse_args()

    path = generated_history(args.customers, args.years, args.seed, args.end)
    out = io.StringIO()
    results: dict[str, list[float]] = {"timeline": [], "copy": [], "lib1": [], "lib100": []}
    count = 0
    for run in range(args.repeat):
        rate, count, url, drop = bench_timeline(path, args.batch_size)
        results["timeline"].append(rate)
        print(f"run {run + 1}: timeline {rate:,.0f}/s", file=sys.stderr, flush=True)
        results["copy"].append(bench_copy(url))
        drop()
        results["lib1"].append(bench_library(path, min(args.library_sample, 5000), 1))
        results["lib100"].append(bench_library(path, args.library_sample, 100))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items()), file=sys.stderr)
    p50, p99 = bench_single_latency(args.latency_samples)
    med = {k: statistics.median(v) for k, v in results.items()}
    ceiling = med["copy"]
    print(f"events: {count:,} from {path.name}; medians of {args.repeat} runs", file=out)
    print(f"{'path':<38}{'events/s':>12}{'x COPY time':>14}", file=out)
    for key, label in [
        ("copy", "raw COPY into a bare table (ceiling)"),
        ("timeline", "timeline ingest, all checks on"),
        ("lib100", "eventsourcing save(), 100 per call"),
        ("lib1", "eventsourcing save(), 1 per call"),
    ]:
        print(f"{label:<38}{med[key]:>12,.0f}{ceiling / med[key]:>13.1f}x", file=out)
    print(f"single-event ingest latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({args.latency_samples} events)", file=out)
    print(out.getvalue())


if __name__ == "__main__":
    main()
