"""Every customer's stream, read and worked on by every core: contiguous ranges of ids, one per task.

The same division of work as ``state --all`` (:mod:`timeline.application.states`): the customers are cut into
ranges of about as many events each (``states.even_shards``), each read in one pass (batched queries over its
streams) by a worker process or by this one, which takes the last range no worker has started rather than
wait for a result (a range done here is not pickled back). Results come in customer-range order. A task is
any picklable ``work(store, customer_ids) -> (events read, result)``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from timeline.application.ports import EventStore
from timeline.application.states import MAX_RANGE_EVENTS, PARALLEL_FROM, RANGES_PER_PROCESS, even_shards

R = TypeVar("R")
Work = Callable[[EventStore, list[str]], tuple[int, R]]


def workers_for(store: EventStore, workers: int | None) -> int:
    """Processes to work in, this one included: one per core on a large store that can be opened again."""
    if store.opener() is None:
        return 1
    if workers is None:
        return (os.cpu_count() or 1) if store.head_position() >= PARALLEL_FROM else 1
    return max(1, workers)


def over_customers(
    store: EventStore,
    work: Work[R],
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[R]:
    """``work`` on every customer of ``store``, a range at a time, in customer order."""
    workers = workers_for(store, workers)
    head = store.head_position()
    customers = sorted(store.customer_ids())
    if workers == 1:
        events, result = work(store, customers)
        if progress:
            progress(head, head)
        yield result
        return
    lengths = store.heads(customers)
    sizes = [lengths.get(c, (1, ""))[0] for c in customers]
    count = max(workers * RANGES_PER_PROCESS, -(-sum(sizes) // MAX_RANGE_EVENTS))
    shards = even_shards(customers, sizes, count)
    done = 0
    here: dict[int, tuple[int, R]] = {}
    spawn = multiprocessing.get_context("spawn")  # no inherited database connections
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=spawn) as pool:
        futures = [pool.submit(_in_worker, store.opener(), work, shard) for shard in shards]
        for index, future in enumerate(futures):
            while index not in here and not future.done():
                stolen = next(
                    (j for j in range(len(futures) - 1, index - 1, -1) if j not in here and futures[j].cancel()),
                    None,
                )
                if stolen is None:
                    break
                here[stolen] = work(store, shards[stolen])
            events, result = here.pop(index) if index in here else future.result()
            done += events
            if progress:
                progress(min(done, head), head)
            yield result


def _in_worker(opener: Callable[[], EventStore], work: Work[R], customer_ids: list[str]) -> tuple[int, R]:
    """In a worker process: ``work`` on a store of its own."""
    from timeline.application.process import tune_gc_for_bulk_work

    tune_gc_for_bulk_work()
    store = opener()
    try:
        return work(store, customer_ids)
    finally:
        store.close()
