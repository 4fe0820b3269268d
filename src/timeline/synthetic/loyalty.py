"""Greetings and loyalty points: birthdays, anniversaries, festivals, and redemptions the points cover.

A redemption never asks for more than a conservative lower bound of the
points available under the policy: only birthday greetings and surveys that
reach the file on time are counted (late ones may not be known yet when the
redemption is checked), by calendar year in the policy's time zone, with the
policy's amounts, caps and expiry, consumed oldest bucket first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from timeline.synthetic.simulation import DAY, EPOCH, HOUR, Agenda, leap
from timeline.synthetic.vocab import BIRTHDAY_GIFTS, FESTIVAL_GIFTS, GREETING_CHANNELS, REDEMPTIONS, REWARDS


class Loyalty(Agenda):
    """The greeting and points actions of a customer (mixed into :class:`timeline.synthetic.customers.Customer`)."""

    birth: dt.date
    level: int
    rm_id: str
    churn_at: int
    reg: int

    def init_points(self) -> None:
        self.buckets: dict[int, int] = {}
        """Points counted so far per calendar year earned."""
        self.birthday_years: set[int] = set()
        self.survey_months: set[tuple[int, int]] = set()

    def next_birthday(self, t: int, year: int | None = None) -> None:
        """Schedule the first birthday after ``t``, in ``year`` or later."""
        year = self.w.date(t).year if year is None else year
        for y in (year, year + 1):
            month, day = self.birth.month, self.birth.day
            if month == 2 and day == 29 and not leap(y):
                day = 28
            when = (dt.date(y, month, day).toordinal() - EPOCH) * DAY + 9 * HOUR + self.rng.randrange(2 * HOUR)
            if when > t:
                self.at(when, self.birthday)
                return

    def birthday(self, t: int, _: Any) -> None:
        rng = self.rng
        if rng.random() < 0.95:
            data = {"occasion": "birthday", "channel": rng.choice(GREETING_CHANNELS)}
            if self.level >= 1 and rng.random() < 0.6:
                data["gift"] = rng.choice(BIRTHDAY_GIFTS)
            _, late = self.emit(t, "greeting.sent", data, "crm", self.rm_id, late_ok=True)
            year, _ = self.w.policy.calendar(t)
            if not late and year not in self.birthday_years:
                self.birthday_years.add(year)
                self.earn(year, self.w.policy.birthday_points)
        self.next_birthday(t, self.w.date(t).year + 1)

    def survey_points(self, t: int) -> None:
        """A survey that reached the file on time: its points, once per calendar month."""
        month = self.w.policy.calendar(t)
        if month not in self.survey_months:
            self.survey_months.add(month)
            self.earn(month[0], self.w.policy.survey_points)

    def next_anniversary(self, t: int) -> None:
        d = self.w.date(self.reg)
        year = self.w.date(t).year + 1
        day = min(d.day, 28)
        self.at((dt.date(year, d.month, day).toordinal() - EPOCH) * DAY + 10 * HOUR, self.anniversary)

    def anniversary(self, t: int, _: Any) -> None:
        if self.rng.random() < 0.3:
            data = {"occasion": "anniversary", "channel": self.rng.choice(GREETING_CHANNELS)}
            self.emit(t, "greeting.sent", data, "crm", self.rm_id, late_ok=True)
        self.next_anniversary(t)

    def next_festival(self, t: int) -> None:
        festivals = self.w.festivals
        lo, hi = 0, len(festivals)
        day = t // DAY
        while lo < hi:  # the first festival after today
            mid = (lo + hi) // 2
            if festivals[mid][0] <= day:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(festivals):
            self.at(festivals[lo][0] * DAY + 8 * HOUR + self.rng.randrange(3 * HOUR), self.festival, lo)

    def festival(self, t: int, index: int) -> None:
        rng = self.rng
        if rng.random() < 0.7:
            name = self.w.festivals[index][1]
            data = {"occasion": "festival", "channel": rng.choice(GREETING_CHANNELS)}
            if self.level >= 2 and rng.random() < 0.7:
                data["gift"] = FESTIVAL_GIFTS[name]
            self.emit(t, "greeting.sent", data, "crm", self.rm_id, late_ok=True)
        self.next_festival(t)

    def earn(self, year: int, points: int) -> None:
        self.buckets[year] = self.buckets.get(year, 0) + points

    def available(self, year: int) -> int:
        expired = self.w.policy.expired
        return sum(v for y, v in self.buckets.items() if not expired(y, year))

    def redeem(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        year, _ = self.w.policy.calendar(t)
        available = self.available(year)
        if available >= REDEMPTIONS[0]:
            points = rng.choice([n for n in REDEMPTIONS if n <= available])
            self.emit(t, "points.redeemed", {"points": points, "reward": rng.choice(REWARDS)}, "loyalty", self.rm_id)
            left = points
            expired = self.w.policy.expired
            for y in sorted(self.buckets):
                if expired(y, year) or left == 0:
                    continue
                take = min(left, self.buckets[y])
                self.buckets[y] -= take
                left -= take
            assert left == 0
        self.after(t, 300 * DAY, self.redeem)
