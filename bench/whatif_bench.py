"""``timeline whatif`` against ``state --all`` over the same store, side by side in one run.

Run:  .venv/bin/python bench/whatif_bench.py --customers 8000 --years 3 --repeat 3
      .venv/bin/python bench/whatif_bench.py --customers 2000 --years 3 --repeat 3

The generated branch history (8,000 customers over 3 years: about 1,000,000
events, as ``ingest_bench``) is ingested into a fresh PostgreSQL database
(``--db URL`` reuses a store already ingested). Then, interleaved, ``repeat``
times each, the two commands run as their own ``timeline`` processes, exactly
as an operator starts them, output discarded: ``state --all --json`` and
``whatif --policy CANDIDATE --json`` (the shipped policy with the affluent
threshold raised to 80,000, from the beginning). Reported: the median wall
time of each, their ratio (the issue's bound: whatif within 1.5x), the CPU
time of each (user + system, the process and its workers: the fairer figure on
a machine other work loads) and the peak resident set of each (``wait4``: the
largest of the process and the worker processes it waited for).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import fresh_db, generated_history, ingest_file  # noqa: E402

from timeline.domain.policy import load_policy  # noqa: E402

TIMELINE = str(Path(sys.executable).with_name("timeline"))


def run(args: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one ``timeline`` command and the workers it waited for."""
    start = time.perf_counter()
    process = subprocess.Popen([TIMELINE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    assert process.stderr is not None
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"timeline {' '.join(args)} failed: {process.stderr.read().decode()}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def candidate_file(directory: Path) -> Path:
    policy = load_policy().model_dump(mode="json")
    policy["id"] = "bench-affluent-80k"
    policy["tier"]["tiers"][1]["threshold"] = "80000"
    path = directory / "candidate.json"
    path.write_text(json.dumps(policy), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=8000)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", help="A store already holding the history (not dropped); default: a fresh one")
    args = parser.parse_args()

    drop = None
    url = args.db
    if url is None:
        history = generated_history(args.customers, args.years, args.seed, args.end)
        url, drop = fresh_db()
    try:
        if drop is not None:
            started = time.perf_counter()
            stored = ingest_file(url, history)
            print(f"ingested {stored:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        work = Path(tempfile.mkdtemp(prefix="tl-whatif-"))
        candidate = candidate_file(work)
        as_of = f"{args.end}"
        commands = {
            "state --all": ["state", "--all", "--json", "--as-of", as_of, "--db", url],
            "whatif": ["whatif", "--policy", str(candidate), "--json", "--as-of", as_of, "--db", url],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(args.repeat):
            for name, command in commands.items():
                seconds, used, peak = run(command)
                times[name].append(seconds)
                cpu[name].append(used)
                peaks[name].append(peak)
                print(f"round {round_ + 1}: {name} {seconds:.1f} s, CPU {used:.1f} s, peak {peak:.0f} MB", flush=True)
        differing = subprocess.run([TIMELINE, *commands["whatif"]], capture_output=True, text=True, check=True)
        summary = json.loads(differing.stdout.splitlines()[-1])["summary"]
        base, what = (statistics.median(times[n]) for n in commands)
        base_cpu, what_cpu = (statistics.median(cpu[n]) for n in commands)
        print(
            f"over {summary['customers']:,} customers ({summary['differing']:,} differ under the candidate), "
            f"medians of {args.repeat}, {os.cpu_count()} cores: state --all {base:.1f} s "
            f"(peak {max(peaks['state --all']):.0f} MB), whatif {what:.1f} s (peak {max(peaks['whatif']):.0f} MB); "
            f"whatif / state --all = {what / base:.2f}x (bound 1.5x: {'yes' if what <= 1.5 * base else 'no'}); "
            f"CPU state --all {base_cpu:.1f} s, whatif {what_cpu:.1f} s: {what_cpu / base_cpu:.2f}x"
        )
    finally:
        if drop is not None:
            drop()


if __name__ == "__main__":
    main()
