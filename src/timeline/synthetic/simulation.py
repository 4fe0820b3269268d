"""The simulation engine: business time, the shared calendar, and each customer's agenda of actions.

Times are whole seconds since 1970-01-01 00:00 in +08:00 (the branch's local
time), so a day is ``t // DAY`` and no time zone arithmetic runs in the hot
loop. Each customer is an :class:`Agenda`: actions scheduled at instants and
run in time order, each of which may emit events and schedule more actions.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from collections.abc import Callable
from typing import Any

from timeline.synthetic.bank_policy import LOCAL_OFFSET, BranchPolicy
from timeline.synthetic.vocab import MID_AUTUMN, SPRING_FESTIVAL

DAY = 86_400
HOUR = 3_600
MINUTE = 60
EPOCH = dt.date(1970, 1, 1).toordinal()
CLOSE_OF_BUSINESS = dt.time(18, 0)
BRANCH_TZ = dt.timezone(dt.timedelta(seconds=LOCAL_OFFSET))
LATE_SHARE = 0.02
"""Of the events that may arrive late (visits, greetings, surveys, profile updates), this share does."""

Item = tuple[int, int, int, bool, dict[str, Any]]
"""An event on its way to the file: (file position time, customer index, sequence, arrives late, event)."""
Action = Callable[[int, Any], None]

_UUID_MASK = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
_UUID_BITS = 0x00000000_0000_4000_8000_000000000000


class World:
    """What every customer shares: the period, the calendar, the policy, the events of the current window."""

    def __init__(self, end: dt.date, years: float, policy: BranchPolicy) -> None:
        self.policy = policy
        self.end_day = end.toordinal() - EPOCH
        self.end_s = self.end_day * DAY + CLOSE_OF_BUSINESS.hour * HOUR
        span = max(1, round(years * 365.25))
        self.start_day = self.end_day - span + 1
        self.span_days = span
        self._days: dict[int, str] = {}
        self._hms: dict[int, str] = {}
        self.festivals = self._festivals()
        self.batch: list[Item] = []
        """Events of the current window."""
        self.late: list[Item] = []
        """A heap of the events that reach the file later than they occurred."""

    def iso(self, t: int) -> str:
        d, s = divmod(t, DAY)
        try:
            day = self._days[d]
        except KeyError:
            day = self._days[d] = dt.date.fromordinal(d + EPOCH).isoformat()
        try:
            hms = self._hms[s]
        except KeyError:
            h, rest = divmod(s, HOUR)
            m, sec = divmod(rest, MINUTE)
            hms = self._hms[s] = f"T{h:02d}:{m:02d}:{sec:02d}+08:00"
        return day + hms

    def date(self, t: int) -> dt.date:
        return dt.date.fromordinal(t // DAY + EPOCH)

    def _festivals(self) -> list[tuple[int, str]]:
        first = dt.date.fromordinal(self.start_day + EPOCH).year
        last = dt.date.fromordinal(self.end_day + EPOCH).year
        days = []
        for year in range(first, last + 1):
            days.append((dt.date(year, 1, 1), "元旦"))
            days.append((dt.date(year, *SPRING_FESTIVAL.get(year, (2, 5))), "春节"))
            days.append((dt.date(year, *MID_AUTUMN.get(year, (9, 20))), "中秋"))
            days.append((dt.date(year, 10, 1), "国庆"))
        days.sort()
        return [(d.toordinal() - EPOCH, name) for d, name in days]


def biz_time(rng: random.Random, day: int) -> int:
    """A moment of business hours (09:00–17:30) on a day."""
    return day * DAY + 9 * HOUR + int(rng.random() * (8 * HOUR + 30 * MINUTE))


def day_of(date: dt.date) -> int:
    return date.toordinal() - EPOCH


def quarter_after(day: int) -> int:
    """The first day of the calendar quarter after the one holding ``day``."""
    d = dt.date.fromordinal(day + EPOCH)
    month = (d.month - 1) // 3 * 3 + 4
    return day_of(dt.date(d.year + 1, 1, 1) if month > 12 else dt.date(d.year, month, 1))


def leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


class Agenda:
    """One customer's timeline as a discrete-event simulation: actions on an agenda, in business time.

    Nothing is scheduled after the end of the history or at or after the
    customer's erasure (an erased stream takes nothing).
    """

    def __init__(self, world: World, index: int, customer_id: str, seed: int, erase_at: int | None) -> None:
        self.w = world
        self.rng = random.Random(seed)
        self.index = index
        self.cid = customer_id
        self.end_s = world.end_s
        self.erase_at = erase_at if erase_at is not None else world.end_s + 1
        self.agenda: list[tuple[int, int, Action, Any]] = []
        self.batch = world.batch
        self.late = world.late
        self.iso = world.iso
        self.seq = 0
        self.done = False

    def at(self, t: int, fn: Action, arg: Any = None) -> None:
        if t <= self.end_s and t < self.erase_at:
            self.seq += 1
            heapq.heappush(self.agenda, (t, self.seq, fn, arg))

    def at_erasure(self, t: int, fn: Action) -> None:
        """Schedule the erasure itself (every other action stops short of it)."""
        self.seq += 1
        heapq.heappush(self.agenda, (t, self.seq, fn, None))

    def after(self, t: int, mean: float, fn: Action, arg: Any = None) -> None:
        """Schedule at a random business moment about ``mean`` seconds after ``t`` (exponential gap)."""
        rng = self.rng
        day = (t + int(rng.expovariate(1.0 / mean))) // DAY
        when = day * DAY + 9 * HOUR + int(rng.random() * (8 * HOUR + 30 * MINUTE))
        if when <= t:
            when = t + MINUTE + int(rng.random() * HOUR)
        if when <= self.end_s and when < self.erase_at:
            self.seq += 1
            heapq.heappush(self.agenda, (when, self.seq, fn, arg))

    def soon(self, t: int, low: int, high: int) -> int:
        """A business moment roughly ``low``–``high`` seconds after ``t``, always after ``t``."""
        rng = self.rng
        when = biz_time(rng, (t + rng.randint(low, high)) // DAY)
        return when if when > t else t + rng.randint(MINUTE, HOUR)

    def emit(
        self, t: int, kind: str, data: dict[str, Any], source: str, actor: str, late_ok: bool = False
    ) -> tuple[str, bool]:
        """Record an event occurring at ``t``; return its id and whether it reaches the file late."""
        rng = self.rng
        h = f"{(rng.getrandbits(128) & _UUID_MASK) | _UUID_BITS:032x}"
        event_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        self.seq += 1
        event = {
            "event_id": event_id,
            "type": kind,
            "customer_id": self.cid,
            "occurred_at": self.iso(t),
            "source": source,
            "actor": actor,
            "data": data,
        }
        if late_ok and rng.random() < LATE_SHARE:
            delayed = t + DAY + int(rng.random() * 9 * DAY)
            if delayed < self.erase_at:
                heapq.heappush(self.late, (delayed, self.index, self.seq, True, event))
                return event_id, True
        self.batch.append((t, self.index, self.seq, False, event))
        return event_id, False

    def advance(self, until: int) -> bool:
        """Run the actions before ``until``; false once nothing more can happen."""
        agenda = self.agenda
        pop = heapq.heappop
        while agenda and agenda[0][0] < until:
            t, _, fn, arg = pop(agenda)
            fn(t, arg)
            if self.done:
                return False
        return bool(agenda)
