"""Peak memory and time of ``timeline consume summary --once`` over a whole backlog, for one or more codes.

Run:  .venv/bin/python bench/consume_memory_bench.py --customers 2000 --years 3
      .venv/bin/python bench/consume_memory_bench.py --customers 8000 --timeline ../base/.venv/bin/timeline

The generated branch is ingested into an in-memory store in this process
(quicker than a database: the consumer reads only the topic) and published
with the relay into a fresh 3-partition topic on a Tansu broker. Then each
``--timeline`` executable (default: the one beside this interpreter), in
turn, consumes the whole topic into a fresh PostgreSQL read model as its own
process; its peak resident set size is read from the kernel when it exits
(``wait4``). Memory that does not grow with the history shows as about the
same peak at 2,000 and at 8,000 customers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import psycopg  # noqa: E402
from common import KEK, OUT, create_topic, fresh_db, generated_history  # noqa: E402

from tests.kafka import start_broker  # noqa: E402
from timeline.application.jsonl import read_lines  # noqa: E402
from timeline.consumers.relay.relay import Relay  # noqa: E402
from timeline.crypto import KeyWrapper  # noqa: E402
from timeline.engine import Engine  # noqa: E402
from timeline.store.memory import MemoryEventStore  # noqa: E402

TOPIC = "customer-events"


def publish(path: Path, bootstrap: str) -> int:
    store = MemoryEventStore()
    engine = Engine(store, KeyWrapper(KEK))
    with path.open("rb") as fh:
        accepted = sum(o.status == "accepted" for o in engine.ingestor(batch_size=2000).ingest(read_lines(fh)))
    print(f"ingested {accepted:,} events", file=sys.stderr, flush=True)
    create_topic(bootstrap, TOPIC, 3)
    relay = Relay(store, bootstrap, TOPIC, batch_size=5000)
    try:
        return relay.run(stop_when_caught_up=True).published
    finally:
        relay.close()


def consume(timeline: str, bootstrap: str, work: Path) -> dict[str, object]:
    url, drop = fresh_db()
    try:
        start = time.perf_counter()
        with open(work / "consume.log", "ab") as log:
            # through time(1): a child forked from this process inherits its peak (the in-memory store) past exec
            process = subprocess.Popen(
                ["/usr/bin/time", "-f", "%M", "-o", str(work / "peak.txt"), timeline, "consume", "summary", "--once",
                 "--db", url, "--bootstrap", bootstrap, "--topic", TOPIC],
                stdout=subprocess.DEVNULL, stderr=log, cwd=work,
            )  # fmt: skip
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM customer_summary").fetchone()[0]
        return {
            "timeline": timeline,
            "peak_mb": round(int((work / "peak.txt").read_text().split()[-1]) / 1024),
            "seconds": round(seconds, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "exit": os.waitstatus_to_exitcode(status),
            "rows": rows,
        }
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeline", action="append", help="A timeline executable to measure (repeatable).")
    args = parser.parse_args()
    timelines = args.timeline or [str(Path(sys.executable).with_name("timeline"))]

    work = Path(tempfile.mkdtemp(prefix="tl-consume-mem-"))
    broker = start_broker(work)
    try:
        published = publish(generated_history(args.customers, args.years, args.seed), broker.bootstrap)
        runs = []
        for timeline in timelines:
            runs.append(consume(timeline, broker.bootstrap, work))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        broker.stop()
    result = {"customers": args.customers, "events": published, "runs": runs}
    OUT.mkdir(exist_ok=True)
    (OUT / f"consume-memory-{args.customers}c.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
