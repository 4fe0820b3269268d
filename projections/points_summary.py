"""A stream's counted point events in compact form, and the points available at an instant (POLICY §4).

The redemption check needs one number: the points available at the
redemption's instant. :func:`timeline.projections.points.points_as_of` works
it out from the events, with the ledger lines that explain it; this keeps only
what that number rests on — each deposit's account, instant, amount and term,
each redemption's points, each other earning's instant (and the year or month
it is the first of) — as integers in arrays, tens of bytes an event, and runs
the same ledger without lines. Rates, the holding period and a bucket's expiry
are read from the policy version in force at each earning's instant (the
deposit's for a vesting, as :class:`~timeline.projections.points.PointSources`
does), so the number is the one ``state`` gives under the same versions
(tests/test_acceptance_guard.py compares the two).
"""

from __future__ import annotations

import datetime as dt
import functools
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from decimal import ROUND_FLOOR, Decimal
from itertools import accumulate
from typing import Protocol

from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import Deposit, EventType, Greeting, Redemption
from timeline.projections.points import local_year

DEPOSIT, REDEMPTION, QUALIFICATION, BIRTHDAY, SURVEY = range(5)
"""The kinds of fact kept (a greeting other than a birthday's earns nothing and is not kept)."""
_KINDS = {
    EventType.POINTS_REDEEMED: REDEMPTION,
    EventType.REFERRAL_QUALIFIED: QUALIFICATION,
    EventType.GREETING_SENT: BIRTHDAY,
    EventType.SURVEY_COMPLETED: SURVEY,
}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY = 86_400_000_000
"""Microseconds in a day (durations are exact, POLICY §3)."""
EARN, REDEEM = 0, 1


class BalanceLine(Protocol):
    """An account's counted movements: net change in cents per instant (in microseconds), ascending."""

    instants: array
    deltas: array


def micros(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def instant(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


class PointFacts:
    """The counted point events of one stream, one entry each in parallel arrays, in recorded order."""

    __slots__ = ("zone", "kinds", "at", "values", "accounts", "terms", "versions", "names")

    def __init__(self, zone: dt.tzinfo) -> None:
        """``zone``: the policy's time zone (the same in every version), which dates birthdays and surveys."""
        self.zone = zone
        self.kinds = array("b")
        self.at = array("q")
        """``occurred_at`` in microseconds since the epoch."""
        self.values = array("q")
        """A deposit's cents, a redemption's points, a birthday's local year, a survey's local year × 12 + month."""
        self.accounts = array("h")
        """A deposit's account, as an index into ``names``."""
        self.terms = array("h")
        """A time deposit's term in months (0 if none), -1 for other products."""
        self.versions = array("q")
        """The event's version in its stream (what a correction names)."""
        self.names: list[str] = []

    def deposit(self, deposit: Deposit, at: int, cents: int, version: int) -> None:
        """Take a counted deposit: its record, instant (microseconds), amount (cents) and version."""
        self._append(DEPOSIT, at, cents, self._name(deposit.account_id), version)
        self.terms[-1] = (deposit.term_months or 0) if deposit.product == "time" else -1

    def add(self, event: RecordedEvent) -> None:
        """Take a counted event of another type (those that earn or redeem nothing are left out)."""
        kind = _KINDS.get(event.type)
        if kind is None:
            return
        if kind == REDEMPTION:
            redemption: Redemption = event.record
            value = redemption.points
        elif kind == BIRTHDAY:
            greeting: Greeting = event.record
            if greeting.occasion != "birthday":
                return
            value = local_year(event.occurred_at, self.zone)
        elif kind == SURVEY:
            local = event.occurred_at.astimezone(self.zone)
            value = local.year * 12 + local.month - 1
        else:
            value = 0
        self._append(kind, micros(event.occurred_at), value, 0, event.version)

    def _append(self, kind: int, at: int, value: int, account: int, version: int) -> None:
        self.kinds.append(kind)
        self.at.append(at)
        self.values.append(value)
        self.accounts.append(account)
        self.terms.append(-1)
        self.versions.append(version)

    def void(self, version: int) -> None:
        """Forget the event at this version of the stream, if it is one of these (a correction voided it)."""
        versions = self.versions
        for index in range(len(versions) - 1, -1, -1):
            if versions[index] == version:
                for column in (self.kinds, self.at, self.values, self.accounts, self.terms, versions):
                    del column[index]
                return

    def available(self, moment: dt.datetime, lines: Mapping[str, BalanceLine], versions: PolicyTimeline) -> int:
        """The points available at ``moment`` from the facts at or before it, as the points ledger runs them.

        ``lines``: the stream's accounts (of the same counted events), by account id.
        """
        end = micros(moment)
        schedule = _schedule(versions)
        items: list[tuple[int, int, int, int]] = []
        """(instant, EARN or REDEEM, points, bucket): ledger order is instant, then earnings first; which
        earning or redemption of one instant goes first changes no bucket's total."""
        groups: dict[tuple[int, int], list[int]] = {}
        firsts: dict[tuple[int, int], int] = {}
        kinds, at, values = self.kinds, self.at, self.values
        for index in range(len(kinds)):
            when = at[index]
            if when > end:
                continue
            kind = kinds[index]
            if kind == DEPOSIT:
                key = (self.accounts[index], when)
                group = groups.get(key)
                if group is None:
                    groups[key] = [index]
                else:
                    group.append(index)
            elif kind == REDEMPTION:
                items.append((when, REDEEM, values[index], 0))
            elif kind == QUALIFICATION:
                rules = schedule.at(when).points
                items.append((when, EARN, rules.referral, local_year(instant(when), self.zone)))
            else:
                key = (kind, values[index])  # the first birthday of a year, the first survey of a month
                if key not in firsts or when < firsts[key]:
                    firsts[key] = when
        for (kind, _), when in firsts.items():
            rules = schedule.at(when).points
            points = rules.birthday if kind == BIRTHDAY else rules.survey
            items.append((when, EARN, points, local_year(instant(when), self.zone)))
        if groups:
            self._vest(groups, end, lines, schedule, items)
        items.sort()
        return _run(items, end, schedule)

    def _vest(
        self,
        groups: dict[tuple[int, int], list[int]],
        end: int,
        lines: Mapping[str, BalanceLine],
        schedule: _Schedule,
        items: list[tuple[int, int, int, int]],
    ) -> None:
        """The vestings at or before ``end`` of deposits grouped by account and instant (in stored order).

        A group shares what it kept over its holding period — the lowest balance over it less the balance
        before it, clamped to the group — among its deposits in order (POLICY §4).
        """
        sums: dict[int, list[int]] = {}
        values, terms = self.values, self.terms
        for (account, start), group in groups.items():
            rules = schedule.at(start).points
            vests_at = start + rules.deposit_hold_days * DAY
            if vests_at > end:
                continue
            line = lines[self.names[account]]
            balances = sums.get(account)
            if balances is None:
                balances = sums[account] = list(accumulate(line.deltas))
            instants = line.instants
            first = bisect_left(instants, start)
            last = bisect_right(instants, vests_at, lo=first)
            before = balances[first - 1] if first else 0
            total = values[group[0]] if len(group) == 1 else sum([values[i] for i in group])
            left = max(0, min(total, min(balances[first:last]) - before))
            year = local_year(instant(vests_at), self.zone)
            unit = rules.deposit_unit
            for index in group:
                share = min(values[index], left)
                left -= share
                earned = int((Decimal(share).scaleb(-2) / unit).to_integral_value(ROUND_FLOOR))
                if terms[index] >= rules.long_time_deposit_months:
                    earned *= rules.long_time_deposit_multiplier
                items.append((vests_at, EARN, earned, year))

    def _name(self, account_id: str) -> int:
        try:
            return self.names.index(account_id)
        except ValueError:
            self.names.append(account_id)
            return len(self.names) - 1


def _run(items: list[tuple[int, int, int, int]], end: int, schedule: _Schedule) -> int:
    """Run earnings and redemptions into yearly buckets: each bucket expires as dated by the version in force
    at its first earning, a redemption takes from the oldest buckets first and what they lack is overdraft."""
    buckets: dict[int, int] = {}
    expires: dict[int, int] = {}
    overdraft = 0
    soonest: int | None = None
    for when, kind, points, year in items:
        if soonest is not None and soonest <= when:
            soonest = _expire(buckets, expires, when)
        if kind == EARN:
            if not points:
                continue
            if year in buckets:
                buckets[year] += points
                continue
            if year not in expires:
                policy = schedule.at(when)
                expires[year] = _expiry(policy.zone, policy.points.expiry_years, year)
            buckets[year] = points
            if soonest is None or expires[year] < soonest:
                soonest = expires[year]
            continue
        wanted = points
        for bucket in sorted(buckets):
            if not wanted:
                break
            take = min(wanted, buckets[bucket])
            buckets[bucket] -= take
            wanted -= take
        overdraft += wanted
    if soonest is not None and soonest <= end:
        _expire(buckets, expires, end)
    return sum(buckets.values()) - overdraft


def _expire(buckets: dict[int, int], expires: dict[int, int], moment: int) -> int | None:
    """Drop the buckets expired by ``moment``; when the next one left expires (None: none left)."""
    for year in [y for y in buckets if expires[y] <= moment]:
        del buckets[year]
    return min((expires[y] for y in buckets), default=None)


@functools.cache
def _expiry(zone: dt.tzinfo, years: int, year: int) -> int:
    """When the bucket of ``year`` expires, in microseconds: the start of the year ``years`` later in ``zone``."""
    return micros(dt.datetime(year + years, 1, 1, tzinfo=zone))


class _Schedule:
    """The versions of a timeline by the microsecond they take effect from."""

    __slots__ = ("timeline", "starts", "policies")

    def __init__(self, timeline: PolicyTimeline) -> None:
        self.timeline = timeline
        self.starts = [micros(v.effective_from) for v in timeline.versions]
        self.policies = [v.policy for v in timeline.versions]

    def at(self, us: int) -> Policy:
        """The policy in force at this instant (as :meth:`PolicyTimeline.at`)."""
        policies = self.policies
        return policies[0] if len(policies) == 1 else policies[bisect_right(self.starts, us) - 1]


_last: list[_Schedule] = []
"""The schedule of the timeline asked last (every guard of an ingest asks with the same one)."""


def _schedule(timeline: PolicyTimeline) -> _Schedule:
    if _last and _last[0].timeline is timeline:
        return _last[0]
    schedule = _Schedule(timeline)
    _last[:] = [schedule]
    return schedule
