"""Synthetic branch histories: realistic input events for demos, tests and benchmarks.

:func:`generate_branch` simulates a bank branch group in China (three branches,
five relationship managers each) over a period ending at 18:00 (+08:00) on a
given day, and yields the input events as a sender would write them, in the
order they are *recorded* (the file order):

* mostly business order: every customer's timeline is a small discrete-event
  simulation; the simulations advance together 30 days at a time and each
  window's events are sorted by ``occurred_at`` (then customer, then the
  customer's own order), so memory holds one window, never the whole history;
* with late arrivals: about 2% of visits, greetings, surveys and profile
  updates reach the file 1–10 days after their ``occurred_at``;
* with the ledger's habits: most follow-ups are completed around their due
  date, some weeks late, and a few forgotten until the next quarterly ledger
  review after they are 60 days overdue closes them; most complaints are
  resolved within 20 days, some escalate for months, about 1% never are;
  before an erasure the RM resolves and closes whatever is still open.

The output is a pure function of ``(customers, years, seed, end, policy)``: one
``random.Random(seed)`` plans the branch (:mod:`.plan`), each customer
(:mod:`.customers`, :mod:`.accounts`, :mod:`.loyalty`) then draws from a
generator of its own seeded from the plan, and the current time is never read.
The policy (:mod:`.bank_policy`) sets the tier thresholds customers aim around,
the points they can redeem and when those expire.

Every event is valid under POLICY §2 in file order: a registration first and
once; no account balance negative at any instant of business time (voided
duplicates excluded); complaint and follow-up ids unique per customer and
closed at most once, at or after they were opened; redemptions in
non-decreasing business time and never more than a conservative lower bound
of the points available under the policy (only birthday greetings and
surveys that are not late are counted, by calendar year, consumed oldest
first); corrections only void a duplicated visit or deposit recorded
before them; referrals name another customer who registers later; an erasure
comes only when every balance is zero and is the customer's last event;
nothing occurs after the end.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

import orjson

from timeline.domain.policy import Policy, load_policy
from timeline.synthetic.bank_policy import BranchPolicy
from timeline.synthetic.customers import Customer
from timeline.synthetic.plan import Plan, plan_branch
from timeline.synthetic.simulation import BRANCH_TZ, CLOSE_OF_BUSINESS, DAY, World
from timeline.synthetic.vocab import LAPSED_OUTCOME

__all__ = ["LAPSED_OUTCOME", "Arrival", "arrivals", "generate_branch", "last_full_day", "write_jsonl"]

WINDOW = 30 * DAY
"""The simulations advance together this far at a time (memory holds one window's events)."""


class Arrival(NamedTuple):
    event: dict[str, Any]
    late: bool
    """The event reaches the file days after it occurred, behind events that occurred later."""


def generate_branch(
    customers: int, years: float, seed: int, end: dt.date, policy: Policy | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the input events of a simulated branch in recording order (see the module doc).

    ``policy``: the bank's policy the branch follows (default: the shipped one).
    """
    return (a.event for a in arrivals(customers, years, seed, end, policy))


def arrivals(customers: int, years: float, seed: int, end: dt.date, policy: Policy | None = None) -> Iterator[Arrival]:
    """The events of :func:`generate_branch`, each with whether it arrives late."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if not years > 0:
        raise ValueError("years must be positive")
    rng = random.Random(seed)
    world = World(end, years, BranchPolicy.of(policy or load_policy()))
    plans = plan_branch(rng, customers, world)
    return _simulate(world, plans)


def _simulate(world: World, plans: list[Plan]) -> Iterator[Arrival]:
    # Time windows: every customer runs its actions of the window in one go (cache-friendly),
    # then the window's events are put in file order. An event of file position (key) k is
    # emitted by an action at or before k, so it is always collected in k's window.
    batch, late = world.batch, world.late
    active: list[Customer] = []
    joined = 0
    start = world.start_day * DAY
    while start <= world.end_s:
        until = min(start + WINDOW, world.end_s + 1)
        while joined < len(plans) and plans[joined].reg < until:
            active.append(Customer(plans[joined], world))
            joined += 1
        active = [c for c in active if c.advance(until)]
        while late and late[0][0] < until:
            batch.append(heapq.heappop(late))
        batch.sort()
        for item in batch:
            yield Arrival(item[4], item[3])
        batch.clear()
        start = until
    while late:  # late beyond the end of business on the last day
        item = heapq.heappop(late)
        yield Arrival(item[4], item[3])


def write_jsonl(events: Iterable[dict[str, Any]], fh: IO[str]) -> int:
    """Write one compact JSON line per event (UTF-8 text, not ``\\u`` escapes); return how many."""
    dumps = orjson.dumps
    count = 0
    buffer: list[bytes] = []
    for event in events:
        buffer.append(dumps(event, default=str))
        count += 1
        if len(buffer) >= 4096:
            buffer.append(b"")
            fh.write(b"\n".join(buffer).decode())
            buffer.clear()
    if buffer:
        buffer.append(b"")
        fh.write(b"\n".join(buffer).decode())
    return count


def last_full_day(now: dt.datetime) -> dt.date:
    """The last day whose business has closed (18:00 +08:00) by ``now``.

    A history ending on it holds nothing later than ``now``, so ingesting it at
    once rejects nothing as occurring in the future.
    """
    local = now.astimezone(BRANCH_TZ)
    return local.date() if local.time() >= CLOSE_OF_BUSINESS else local.date() - dt.timedelta(days=1)
