"""Loyalty points (积分), POLICY §4: what earns and what redeems, in ledger order.

Deposits vest after their hold on what they kept, qualifications, birthday
greetings and surveys earn at their instant, redemptions consume; the
ledger of :mod:`timeline.projections.ledger` runs them into buckets.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from operator import itemgetter
from typing import NamedTuple

from timeline.domain.policy import Policy, days
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import Deposit, EventType, Greeting, RuleCode
from timeline.domain.wording import money
from timeline.projections.balances import ZERO, StepLine
from timeline.projections.ledger import EARN, REDEEM, Item, LedgerLine, PointsResult, item_moment, settle

POINT_TYPES = frozenset(
    {
        EventType.DEPOSIT_MADE,
        EventType.POINTS_REDEEMED,
        EventType.REFERRAL_QUALIFIED,
        EventType.GREETING_SENT,
        EventType.SURVEY_COMPLETED,
    }
)
"""The types that earn or redeem (deposits also need their account's balance line)."""
_DEPOSIT, _REDEEMED, _QUALIFIED, _GREETING, _SURVEY = (
    EventType.DEPOSIT_MADE,
    EventType.POINTS_REDEEMED,
    EventType.REFERRAL_QUALIFIED,
    EventType.GREETING_SENT,
    EventType.SURVEY_COMPLETED,
)
"""Module names for what :meth:`PointSources.add` compares each event with (an enum attribute costs 0.1 µs
in Python 3.11, a module name a tenth of that)."""


def points_as_of(
    events: Sequence[RecordedEvent], accounts: dict[str, StepLine], policy: Policy, as_of: dt.datetime
) -> PointsResult:
    """Points at ``as_of`` from the events counted up to then (in business order) and their account lines."""
    return settle(point_items(events, accounts, policy), policy, as_of)


def point_items(events: Sequence[RecordedEvent], accounts: dict[str, StepLine], policy: Policy) -> list[Item]:
    """Every earning and redemption these events will ever make, in ledger order, assuming no further event.

    Deposits are vested at d + 30 days on the balance they keep over that
    period; with no later event the balance after the last event holds, so
    a vesting after the last event is what it will be "if the balance holds".
    """
    sources = PointSources(policy)
    for event in events:
        sources.add(event)
    return sources.plan(accounts).items


class PointSources:
    """What earns and what redeems, gathered from counted events in business order (one :meth:`add` each)."""

    __slots__ = ("policy", "versions", "deposits", "others", "birthday_years", "survey_months")

    def __init__(self, policy: Policy, versions: PolicyTimeline | None = None) -> None:
        self.policy = policy
        self.versions = versions
        """Several versions in force: each earning is made under the one in force at its instant (a deposit:
        at the deposit's instant), else ``policy`` decides every one."""
        self.deposits: dict[tuple[str, dt.datetime], list[RecordedEvent]] = {}
        """Deposits by account and instant (in business order): each group vests together."""
        self.others: list[Item] = []
        """Earnings at their own instant and redemptions, in business order."""
        self.birthday_years: set[int] = set()
        self.survey_months: set[tuple[int, int]] = set()

    def copy(self) -> PointSources:
        """Sources that can grow without changing these (a deposit group grows into a new list)."""
        other = PointSources(self.policy, self.versions)
        other.deposits = self.deposits.copy()
        other.others = self.others.copy()
        other.birthday_years = self.birthday_years.copy()
        other.survey_months = self.survey_months.copy()
        return other

    def add(self, event: RecordedEvent) -> None:
        """Take one counted event (at or after every event taken so far)."""
        kind = event.type
        if kind == _DEPOSIT:
            key = (event.record.account_id, event.occurred_at)
            group = self.deposits.get(key)
            self.deposits[key] = [event] if group is None else [*group, event]
            return
        policy = self.policy if self.versions is None else self.versions.at(event.occurred_at)
        rules, zone = policy.points, policy.zone
        if kind == _REDEEMED:
            self.others.append((event.occurred_at, REDEEM, event.position, event))
        elif kind == _QUALIFIED:
            note = f"referral of {event.record.referred_customer_id} qualified"
            self.others.append(_earn(event, rules.referral, RuleCode.REFERRAL_QUALIFIED, note, zone, self._id(policy)))
        elif kind == _GREETING:
            greeting: Greeting = event.record
            if greeting.occasion != "birthday":
                return
            year = local_year(event.occurred_at, zone)
            if year not in self.birthday_years:
                self.birthday_years.add(year)
                note = f"birthday greeting, first of {year}"
                self.others.append(
                    _earn(event, rules.birthday, RuleCode.BIRTHDAY_GREETING, note, zone, self._id(policy))
                )
        elif kind == _SURVEY:
            local = event.occurred_at.astimezone(zone)
            if (local.year, local.month) not in self.survey_months:
                self.survey_months.add((local.year, local.month))
                note = f"survey, first of {local.year}-{local.month:02d}"
                self.others.append(_earn(event, rules.survey, RuleCode.MONTHLY_SURVEY, note, zone, self._id(policy)))

    def _id(self, policy: Policy) -> str | None:
        """The version to name on a ledger line: only where several are in force."""
        return None if self.versions is None else policy.id

    def _at(self, moment: dt.datetime) -> Policy:
        return self.policy if self.versions is None else self.versions.at(moment)

    def plan(self, accounts: dict[str, StepLine]) -> PointPlan:
        """Every earning and redemption, in ledger order; ``accounts`` are the lines of the same events."""
        vestings = {}
        items = self.others.copy()
        for key, group in self.deposits.items():
            account, moment = key
            vesting = vestings[key] = self._vesting(
                group, account, moment, self._held(group, moment, accounts[account])
            )
            items.extend(vesting.items)
        items.sort(key=_ledger_order)
        return PointPlan(items, vestings)

    def plan_since(
        self, before: PointPlan, moment: dt.datetime, accounts: dict[str, StepLine], lowered: set[str]
    ) -> PointPlan:
        """What :meth:`plan` gives, reusing ``before``, the plan of these sources before events at ``moment`` or
        later were added.

        Items before ``moment`` stay, and so does every vesting whose 30 days end before it. A vesting reads
        only its own deposits and its account's lowest balance over its 30 days. ``lowered``: the accounts
        whose new events may lower that — a withdrawal, or a movement at the account's last instant; deposits
        after it only add values above one already in every window that reaches them. A vesting of another
        account, or that kept the same, is the same; the others are made again.
        """
        hold = days(self.policy.points.deposit_hold_days)
        vestings = before.vestings.copy()
        tail = self.others[bisect_left(self.others, moment, key=item_moment) :]
        for key in reversed(self.deposits):
            account, start = key
            if start + hold < moment:
                break
            group, previous = self.deposits[key], vestings.get(key)
            if previous is None or previous.group is not group or account in lowered:
                held = self._held(group, start, accounts[account])
                if previous is None or previous.group is not group or previous.held.as_tuple() != held.as_tuple():
                    previous = vestings[key] = self._vesting(group, account, start, held)
            tail.extend(previous.items)
        tail.sort(key=_ledger_order)
        return PointPlan([*before.items[: bisect_left(before.items, moment, key=item_moment)], *tail], vestings)

    def _held(self, group: list[RecordedEvent], moment: dt.datetime, line: StepLine) -> Decimal:
        """What the deposits of ``group`` kept over their 30 days (POLICY §4), clamped to them.

        ``moment``, their instant, is one of the line's: the lowest balance over [d, d + 30 days] is the
        lowest of the values from there on (of equal ones the last: the same object every time).
        """
        instants, values = line.instants, line.values
        first = bisect_left(instants, moment)
        last = bisect_right(instants, moment + days(self._at(moment).points.deposit_hold_days), lo=first)
        lowest = min(reversed(values[first:last]))
        total = ZERO
        for event in group:
            total += event.record.amount
        return max(ZERO, min(total, lowest - (values[first - 1] if first else ZERO)))

    def _vesting(self, group: list[RecordedEvent], account: str, moment: dt.datetime, held: Decimal) -> Vesting:
        """The group's vest lines: ``held`` shared among its deposits in stored order."""
        policy = self._at(moment)
        rules, zone = policy.points, policy.zone
        vests_at = moment + days(rules.deposit_hold_days)
        year = local_year(vests_at, zone)
        items: list[Item] = []
        left = held
        for event in group:
            deposit: Deposit = event.record
            amount = deposit.amount
            share = min(amount, left)
            left -= share
            earned = int((share / rules.deposit_unit).to_integral_value(ROUND_FLOOR))
            if deposit.product == "time" and (deposit.term_months or 0) >= rules.long_time_deposit_months:
                earned *= rules.long_time_deposit_multiplier
            note = (
                f"deposit of {money(amount, policy.currency)} to {account} held {rules.deposit_hold_days} days "
                f"({money(share, policy.currency)} kept)"
            )
            line = LedgerLine(
                vests_at, "vest", RuleCode.DEPOSIT_HELD, earned, year, (event.event_id,), note, self._id(policy)
            )
            items.append((vests_at, EARN, event.position, line))
        return Vesting(group, held, items)


class Vesting(NamedTuple):
    """A deposit group's vest lines, and what it kept (they depend on nothing else)."""

    group: list[RecordedEvent]
    held: Decimal
    items: list[Item]


@dataclass(frozen=True, slots=True)
class PointPlan:
    """Every earning and redemption in ledger order, and each deposit group's vesting."""

    items: list[Item]
    vestings: dict[tuple[str, dt.datetime], Vesting]


_ledger_order = itemgetter(0, 1, 2)
"""Instant, then earnings before redemptions, then stored order."""


def local_year(moment: dt.datetime, zone: dt.tzinfo) -> int:
    """``moment.astimezone(zone).year``: for a UTC instant more than two days from a new year, its UTC year
    (no zone is that far from UTC), without the time zone's arithmetic."""
    if moment.tzinfo is dt.UTC and (1 < moment.month < 12 or 2 < moment.day < 30):
        return moment.year
    return moment.astimezone(zone).year


def _earn(event: RecordedEvent, points: int, rule: RuleCode, note: str, zone: dt.tzinfo, policy: str | None) -> Item:
    year = local_year(event.occurred_at, zone)
    return (
        event.occurred_at,
        EARN,
        event.position,
        LedgerLine(event.occurred_at, "earn", rule, points, year, (event.event_id,), note, policy),
    )
