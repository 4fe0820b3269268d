"""Ingest CPU time of several codes on one file, in interleaved pairs: a comparison a loaded machine keeps.

Run:  .venv/bin/python bench/ingest_cpu_bench.py --customers 2000 --years 3 --repeat 3 \
          --python /path/to/other/.venv/bin/python --python .venv/bin/python

Each run is its own process of the given interpreter, in the project that interpreter belongs to (its
``bench/common.py``: a fresh PostgreSQL database, then ``ingest_file`` with every check on, in process).
It reports the ingest's CPU time (user + system of the process and of the validation worker it waited
for; "own": the ingesting process alone, its writer thread included), wall time and events per wall
second. Codes run one after the other within each round, in the given order in odd rounds and reversed in
even ones, so a change of load hits every code alike; CPU time moves far less with the load than wall time
(not nothing: on a crowded machine a process shares caches and cores). Ratios are against the first
``--python``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import generated_history  # noqa: E402

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from common import fresh_db, ingest_file
url, drop = fresh_db()
try:
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    stored = ingest_file(url, __import__("pathlib").Path(sys.argv[2]))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own, worker = (a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    print(json.dumps({"stored": stored, "wall": wall, "cpu": own + worker, "own": own}))
finally:
    drop()
"""


def run(python: str, path: Path) -> dict[str, float]:
    """One ingest by ``python``'s project, in a process of its own."""
    bench = Path(python).absolute().parent.parent.parent / "bench"
    out = subprocess.run(
        [python, "-c", CHILD, str(bench), str(path.absolute())], capture_output=True, text=True, cwd=bench.parent
    )
    if out.returncode:
        raise SystemExit(f"{python} failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", action="append", required=True, help="an interpreter of a project to run")
    args = parser.parse_args()

    path = generated_history(args.customers, args.years, args.seed, args.end)
    results: dict[str, list[dict[str, float]]] = {p: [] for p in args.python}
    for round_ in range(args.repeat):
        for python in args.python if round_ % 2 == 0 else reversed(args.python):
            result = run(python, path)
            results[python].append(result)
            load = os.getloadavg()[0]
            print(
                f"round {round_ + 1} {python}: {result['stored']:,} stored, CPU {result['cpu']:.2f} s "
                f"(ingesting process {result['own']:.2f} s), "
                f"wall {result['wall']:.2f} s, load {load:.2f}",
                file=sys.stderr,
                flush=True,
            )
    first = statistics.median(r["cpu"] for r in results[args.python[0]])
    print(f"{path.name}; medians of {args.repeat} interleaved rounds")
    first_own = statistics.median(r["own"] for r in results[args.python[0]])
    print(f"{'interpreter':<48}{'CPU s':>8}{'x first':>9}{'own s':>8}{'x first':>9}{'wall s':>9}{'events/s':>10}")
    for python, rows in results.items():
        cpu = statistics.median(r["cpu"] for r in rows)
        own = statistics.median(r["own"] for r in rows)
        wall = statistics.median(r["wall"] for r in rows)
        rate = statistics.median(r["stored"] / r["wall"] for r in rows)
        print(f"{python:<48}{cpu:>8.2f}{cpu / first:>9.2f}{own:>8.2f}{own / first_own:>9.2f}{wall:>9.2f}{rate:>10,.0f}")


if __name__ == "__main__":
    main()
