"""Peak memory of each long-running command over one generated history.

Run:  .venv/bin/python bench/memory_bench.py --customers 2000 --years 3
      .venv/bin/python bench/memory_bench.py --customers 8000 --years 3

Each command runs as its own `timeline` process (the one beside this
interpreter), exactly as an operator would start it, and its peak resident
set size is read from the kernel when it exits (``wait4``: the largest of the
process and the children it waited for, e.g. ingest's validation worker).
In order, on one history: ``ingest`` into a fresh SQLite file and into a fresh
PostgreSQL database, ``verify``, ``state --all --json``, ``relay --once`` to
a Tansu broker, ``consume summary --once`` into a PostgreSQL read model, and
``rebuild summary --from store``. Memory that does not grow with the history
shows as about the same peak at 2,000 and at 8,000 customers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import OUT, fresh_db, generated_history  # noqa: E402

from tests.kafka import start_broker  # noqa: E402
from timeline.crypto import new_kek_text  # noqa: E402

TIMELINE = str(Path(sys.executable).with_name("timeline"))


def peak(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of one command; its output is discarded."""
    start = time.perf_counter()
    with open(cwd / "out.log", "ab") as log:
        process = subprocess.Popen([TIMELINE, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1))
    args = parser.parse_args()

    history = generated_history(args.customers, args.years, args.seed, args.end)
    events = sum(1 for _ in history.open("rb"))
    work = Path(tempfile.mkdtemp(prefix="tl-mem-"))
    env = {**os.environ, "TIMELINE_KEK": new_kek_text()}
    sqlite = f"sqlite:///{work / 'store.db'}"
    pg, drop_pg = fresh_db()
    read_db, drop_read = fresh_db()
    broker = start_broker(work)
    topic = "customer-events"
    rows: list[tuple[str, float, float, int]] = []

    def run(label: str, *command: str) -> None:
        mb, seconds, code = peak(list(command), env, work)
        rows.append((label, mb, seconds, code))
        print(f"{label:<40}{mb:>9.0f} MB{seconds:>9.1f} s  exit {code}", file=sys.stderr, flush=True)

    try:
        run("ingest (SQLite)", "ingest", str(history), "--db", sqlite)
        run("ingest (PostgreSQL)", "ingest", str(history), "--db", pg)
        run("verify (SQLite)", "verify", "--db", sqlite)
        run("state --all --json (SQLite)", "state", "--all", "--json", "--db", sqlite)
        run("relay --once (SQLite)", "relay", "--once", "--db", sqlite, "--bootstrap", broker.bootstrap,
            "--topic", topic)  # fmt: skip
        run("consume summary --once", "consume", "summary", "--once", "--db", read_db, "--bootstrap",
            broker.bootstrap, "--topic", topic)  # fmt: skip
        run("rebuild summary --from store (SQLite)", "rebuild", "summary", "--from", "store", "--db", read_db,
            "--store", sqlite)  # fmt: skip
    finally:
        broker.stop()
        drop_pg()
        drop_read()
    result = {
        "customers": args.customers,
        "events": events,
        "peaks": [{"command": c, "peak_mb": round(m), "seconds": round(s, 1), "exit": x} for c, m, s, x in rows],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"memory-{args.customers}c.json").write_text(json.dumps(result, indent=2))
    print(f"{events:,} events, {args.customers:,} customers")
    print(f"{'command':<40}{'peak RSS':>12}{'time':>10}")
    for label, mb, seconds, code in rows:
        failed = "" if code == 0 else f"  (exit {code})"
        print(f"{label:<40}{mb:>9.0f} MB{seconds:>8.1f} s{failed}")


if __name__ == "__main__":
    main()
