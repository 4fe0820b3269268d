"""``state --all`` in one process, in its parts: reading the log, decoding, folding.

Run:  .venv/bin/python bench/state_parts_bench.py postgresql://…/DB [--repeat 5] [--profile]

Against a store already ingested (``bench/common.py``'s ``ingest_file`` of a
generated branch), so that two codes can be compared on databases each filled
by its own ingest from the same file. It imports either this layout or that
of ``7adf472`` (the baseline of issue 10), so the same script runs in both
checkouts. ``--profile`` prints the whole pass under cProfile, by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import pstats
import statistics
import time

from timeline.store import open_store

try:
    from timeline.application.codec import decode
    from timeline.application.process import tune_gc_for_bulk_work
    from timeline.application.states import StateReader, state_of
    from timeline.domain.policy import load_policy
    from timeline.projections.state import UnknownCustomer
except ImportError:  # the layout before the layers (7adf472)
    from projections.policy import load_policy
    from timeline.codec import decode
    from timeline.process import tune_gc_for_bulk_work
    from timeline.states import StateReader

    from projections.state import UnknownCustomer
    from projections.state import customer_state as state_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    tune_gc_for_bulk_work()
    store = open_store(args.url)
    policy = load_policy()
    reader = StateReader(store, policy)
    now = dt.datetime.now(dt.UTC)
    versions = reader.timeline().known_at(now) if hasattr(reader, "timeline") else policy

    def whole() -> None:
        list(StateReader(store, policy).all_states(now, now, workers=1))

    if args.profile:
        whole()
        profile = cProfile.Profile()
        profile.runcall(whole)
        pstats.Stats(profile).sort_stats("tottime").print_stats(35)
        store.close()
        return
    timings: dict[str, list[float]] = {"all_states": [], "read_log": [], "decode": [], "fold": []}
    for _ in range(args.repeat):
        start = time.perf_counter()
        whole()
        timings["all_states"].append(time.perf_counter() - start)
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
        streams = reader.read_all()
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        for customer_id in sorted(streams):
            try:
                state_of(streams[customer_id], versions, now, now)
            except UnknownCustomer:
                continue
        timings["fold"].append(time.perf_counter() - start)
        gc.enable()
    print(", ".join(f"{part} {statistics.median(values):.2f} s" for part, values in timings.items()))
    store.close()


if __name__ == "__main__":
    main()
