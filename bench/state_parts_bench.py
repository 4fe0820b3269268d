"""``state --all`` in one process, in its parts: reading the log, decoding, folding.

Run:  .venv/bin/python bench/state_parts_bench.py [--customers 1600] [--repeat 5] [--profile [--lines 35]]

A fresh database filled by this checkout's own ingest from a generated branch
(cached in ``bench/out``), measured, then dropped. It imports either this
layout or that of ``7adf472`` (the baseline of issue 10), so the same script,
copied into that checkout's ``bench/``, compares the two codes on the same
events. ``all_states`` is timed in one process twice, with the CLI's bulk collector thresholds and
with the cyclic collector off (what the collector's walks over the objects it makes cost), and
``timeline state --all --json`` as a user runs it (a process of its own, folding in one
process per core on a store this large; main pauses the collector for the pass, ``7adf472``
does not). The fold of freshly decoded streams is timed twice, the second time with each
event's typed record already built (what building them costs is the difference).
``--profile`` prints the whole pass under cProfile, by own time (its first
``--lines`` functions).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import fresh_db, generated_history, ingest_file  # noqa: E402

from timeline.store import open_store  # noqa: E402

try:
    from timeline.application.codec import decode
    from timeline.application.states import StateReader, state_of
    from timeline.domain.policy import load_policy
    from timeline.projections.state import UnknownCustomer
except ImportError:  # the layout before the layers (7adf472)
    from projections.policy import load_policy
    from timeline.codec import decode
    from timeline.states import StateReader

    from projections.state import UnknownCustomer
    from projections.state import customer_state as state_of

TIMELINE = str(Path(sys.executable).with_name("timeline"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1600)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--lines", type=int, default=35, help="functions --profile prints")
    args = parser.parse_args()
    url, drop = fresh_db()
    try:
        print(f"{ingest_file(url, generated_history(args.customers, args.years, args.seed)):,} events ingested")
        measure(url, args.repeat, args.profile, args.lines)
    finally:
        drop()


def measure(url: str, repeat: int, profile_it: bool, lines: int) -> None:
    """With the CLI's bulk collector thresholds: ``common`` sets them on import, as ``timeline`` does."""
    store = open_store(url)
    policy = load_policy()
    reader = StateReader(store, policy)
    now = dt.datetime.now(dt.UTC)
    versions = reader.timeline().known_at(now) if hasattr(reader, "timeline") else policy

    def whole() -> None:
        list(StateReader(store, policy).all_states(now, now, workers=1))

    try:
        if profile_it:
            whole()
            profile = cProfile.Profile()
            profile.runcall(whole)
            pstats.Stats(profile).sort_stats("tottime").print_stats(lines)
            return
        timings: dict[str, list[float]] = {
            part: [] for part in ("all_states", "collector off", "read_log", "decode", "fold", "fold again", "cli")
        }
        for _ in range(repeat):
            start = time.perf_counter()
            whole()
            timings["all_states"].append(time.perf_counter() - start)
            with collector_off():
                start = time.perf_counter()
                whole()
                timings["collector off"].append(time.perf_counter() - start)
            start, pages, after = time.perf_counter(), [], 0
            while rows := store.read_log(after, 5000):
                pages.append(rows)
                after = rows[-1].position
            timings["read_log"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for rows in pages:
                for row in rows:
                    decode(row, None, False, with_hash=False)
            timings["decode"].append(time.perf_counter() - start)
            streams = reader.read_all()  # freshly decoded: a typed record is built on its first read
            with collector_off():
                # then the same streams again: their typed records are built by now
                for part in ("fold", "fold again"):
                    start = time.perf_counter()
                    for customer_id in sorted(streams):
                        try:
                            state_of(streams[customer_id], versions, now, now)
                        except UnknownCustomer:
                            continue
                    timings[part].append(time.perf_counter() - start)
            del streams
            start = time.perf_counter()
            subprocess.run([TIMELINE, "state", "--all", "--json", "--db", url], stdout=subprocess.DEVNULL, check=True)
            timings["cli"].append(time.perf_counter() - start)
        print(", ".join(f"{part} {statistics.median(values):.2f} s" for part, values in timings.items()))
    finally:
        store.close()


@contextmanager
def collector_off() -> Iterator[None]:
    """The cyclic collector off, after a collection, so that no earlier garbage is walked in the timed part."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
