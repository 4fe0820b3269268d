"""The on-demand path: one customer's state (200 and 10,000 events) and ``state --all``.

Run:  .venv/bin/python bench/state_bench.py [--all-events 1000000] [--repeat 200]

Each figure is side by side, in the same run and on the same PostgreSQL
database, with the naive way: every event of the customer loaded through the
eventsourcing library's recorder (``select_events``), decoded, and folded from
scratch. Process start is excluded; the timeline reader is created once, as a
service or a long-running CLI session would (its first, cold call is reported
separately). ``state --all`` is timed twice: with a folding process per core
(the default on a large store: worker processes and the calling one) and in
one process (``workers=1``).

``--repeat 0`` skips the one-customer part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import KEK, fresh_db, generated_history, ingest_file  # noqa: E402

from timeline.application.codec import decode  # noqa: E402
from timeline.application.ports import StoredRow  # noqa: E402
from timeline.application.states import StateReader  # noqa: E402
from timeline.crypto import KeyWrapper  # noqa: E402
from timeline.domain.policy import load_policy  # noqa: E402
from timeline.engine import Engine  # noqa: E402
from timeline.projections.state import customer_state  # noqa: E402
from timeline.store import open_store  # noqa: E402

POLICY = load_policy()
WORKERS = os.cpu_count() or 1


def long_customer(customer_id: str, count: int, seed: int) -> list[dict]:
    """A valid history of ``count`` events: deposits, withdrawals that never overdraw, visits, surveys."""
    rnd = random.Random(seed)
    moment = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
    balance = 0
    events = [
        {
            "type": "customer.registered",
            "customer_id": customer_id,
            "occurred_at": moment.isoformat(),
            "data": {
                "name": "李四",
                "birth_date": "1970-01-01",
                "phone": "+86 139 0000 0000",
                "branch_id": "BR001",
                "relationship_manager": "RM001",
                "segment": "individual",
            },
        }
    ]
    step = (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) - moment) / count
    while len(events) < count:
        moment += step
        roll = rnd.random()
        at = moment.isoformat()
        if roll < 0.45 or balance < 2000:
            amount = rnd.randint(100, 200_000)
            balance += amount
            data = {"account_id": f"A{rnd.randint(1, 3)}", "amount": f"{amount}.00", "product": "demand"}
            events.append({"type": "deposit.made", "customer_id": customer_id, "occurred_at": at, "data": data})
        elif roll < 0.6:
            events.append(
                {
                    "type": "visit.recorded",
                    "customer_id": customer_id,
                    "occurred_at": at,
                    "data": {"channel": "branch", "purpose": "review"},
                }
            )
        elif roll < 0.7:
            events.append(
                {"type": "survey.completed", "customer_id": customer_id, "occurred_at": at, "data": {"score": 4}}
            )
        else:
            events.append(
                {
                    "type": "greeting.sent",
                    "customer_id": customer_id,
                    "occurred_at": at,
                    "data": {"occasion": "festival", "channel": "sms"},
                }
            )
    return events


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def naive_state(store, customer_id: str, now: dt.datetime):
    """The library's recorder reads every event; decode; fold from scratch."""
    stored = store._recorder.select_events(customer_id)
    history = [
        decode(StoredRow(e.originator_version, customer_id, e.originator_version, e.state), None, False) for e in stored
    ]
    return customer_state(history, POLICY, now, now)


def one_customer(url: str, sizes: list[int], repeat: int) -> None:
    store = open_store(url)
    engine = Engine(store, KeyWrapper(KEK), POLICY)
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    for size in sizes:
        customer = f"LONG{size}"
        outcomes = list(
            engine.ingestor(clock=lambda: now).ingest(list(enumerate(long_customer(customer, size, size), 1)))
        )
        assert all(o.status == "accepted" for o in outcomes), [o.error for o in outcomes if o.error][:3]
        reader = StateReader(store, POLICY)
        start = time.perf_counter()
        reader.state(customer, now, now)
        cold = time.perf_counter() - start
        warm, naive = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            ours = reader.state(customer, now, now)
            warm.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = naive_state(store, customer, now)
            naive.append(time.perf_counter() - start)
            assert ours.to_json() == theirs.to_json()
        (w50, w99), (n50, n99) = percentiles(warm), percentiles(naive)
        print(
            f"state of one customer, {size:,} events: timeline p50 {w50:.2f} ms p99 {w99:.2f} ms "
            f"(first call {cold * 1000:.1f} ms); naive p50 {n50:.2f} ms p99 {n99:.2f} ms; "
            f"naive/timeline p50 {n50 / w50:.1f}x"
        )
    store.close()


def all_states(events: int, seed: int, repeat: int) -> None:
    customers = max(10, events // 125)
    path = generated_history(customers, 3, seed)
    url, drop = fresh_db()
    try:
        count = ingest_file(url, path)
        store = open_store(url)
        now = dt.datetime.now(dt.UTC)
        timings: dict[int, list[float]] = {1: [], WORKERS: []}
        answers = {}
        for _ in range(repeat):
            for workers in timings:
                start = time.perf_counter()
                states = list(StateReader(store, POLICY).all_states(now, now, workers=workers))
                timings[workers].append(time.perf_counter() - start)
                answers[workers] = [s.to_json() for s in states]
        assert answers[1] == answers[WORKERS], "the workers' answers differ from one process's"
        one, many = (statistics.median(timings[w]) for w in (1, WORKERS))
        sample = [s["customer_id"] for s in answers[1][:: max(1, len(answers[1]) // 200)]]
        start = time.perf_counter()
        for customer in sample:
            naive_state(store, customer, now)
        naive = (time.perf_counter() - start) / len(sample) * len(answers[1])
        print(
            f"state --all over {count:,} events, {len(answers[1]):,} customers (medians of {repeat}): "
            f"timeline, {WORKERS} folding processes {many:.1f} s ({count / many:,.0f} events/s); "
            f"timeline, one process {one:.1f} s ({count / one:,.0f} events/s); "
            f"naive customer by customer (extrapolated from {len(sample)}) {naive:.1f} s "
            f"({count / naive:,.0f} events/s); naive/timeline {naive / many:.1f}x (one process {naive / one:.1f}x)"
        )
        store.close()
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--all-events", type=int, default=1_000_000, help="Size of the store for state --all.")
    parser.add_argument("--all-repeat", type=int, default=3, help="Runs of state --all (medians).")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.repeat:
        url, drop = fresh_db()
        try:
            one_customer(url, [200, 10_000], args.repeat)
        finally:
            drop()
    if args.all_events:
        all_states(args.all_events, args.seed, args.all_repeat)


if __name__ == "__main__":
    main()
