"""Loyalty points (积分), RULES §4: earned into yearly buckets, expiring, redeemed oldest first.

The result is a ledger — every earn, vest, expire, redeem and overdraft line
with the events behind it — so that each balance can be explained.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from uuid import UUID

from projections.balances import StepLine
from projections.policy import Policy, days
from timeline.recorded import RecordedEvent

EARN, REDEEM = 0, 1


@dataclass(slots=True)
class LedgerLine:
    at: dt.datetime
    kind: str
    """``vest`` (deposit held 30 days), ``earn``, ``expire``, ``redeem`` or ``overdraft``."""
    points: int
    """Signed: what the line adds to the available points."""
    bucket: int | None
    event_ids: tuple[UUID, ...]
    note: str


@dataclass(frozen=True, slots=True)
class PendingVest:
    """A deposit still inside its holding period: what it earns if the balance holds."""

    vests_at: dt.datetime
    points_if_held: int
    event_id: UUID


@dataclass(frozen=True, slots=True)
class PointsResult:
    available: int
    buckets: dict[int, int]
    """Unexpired buckets by calendar year: points left in each."""
    overdraft: int
    ledger: tuple[LedgerLine, ...]
    pending: tuple[PendingVest, ...]
    next_change_at: dt.datetime | None
    """When time alone next changes the points: a vesting or a bucket's expiry."""


def points_as_of(
    events: Sequence[RecordedEvent], accounts: dict[str, StepLine], policy: Policy, as_of: dt.datetime
) -> PointsResult:
    """Points at ``as_of`` from the events counted up to then (in business order) and their account lines."""
    return settle(point_items(events, accounts, policy), policy, as_of)


def point_items(
    events: Sequence[RecordedEvent], accounts: dict[str, StepLine], policy: Policy
) -> list[tuple[dt.datetime, int, int, LedgerLine | RecordedEvent]]:
    """Every earning and redemption these events will ever make, in ledger order, assuming no further event.

    Deposits are vested at d + 30 days on the balance they keep over that
    period; with no later event the balance after the last event holds, so
    a vesting after the last event is what it will be "if the balance holds".
    """
    rules = policy.points
    zone = policy.zone
    hold = days(rules.deposit_hold_days)
    items: list[tuple[dt.datetime, int, int, LedgerLine | RecordedEvent]] = []
    birthday_years: set[int] = set()
    survey_months: set[tuple[int, int]] = set()
    deposits: dict[tuple[str, dt.datetime], list[RecordedEvent]] = {}
    for event in events:
        kind = event.type
        if kind == "deposit.made":
            deposits.setdefault((event.data["account_id"], event.occurred_at), []).append(event)
        elif kind == "points.redeemed":
            items.append((event.occurred_at, REDEEM, event.position, event))
        elif kind == "referral.qualified":
            items.append(
                _earn(event, rules.referral, f"referral of {event.data['referred_customer_id']} qualified", zone)
            )
        elif kind == "greeting.sent" and event.data["occasion"] == "birthday":
            year = event.occurred_at.astimezone(zone).year
            if year not in birthday_years:
                birthday_years.add(year)
                items.append(_earn(event, rules.birthday, f"birthday greeting, first of {year}", zone))
        elif kind == "survey.completed":
            local = event.occurred_at.astimezone(zone)
            if (local.year, local.month) not in survey_months:
                survey_months.add((local.year, local.month))
                items.append(_earn(event, rules.survey, f"survey, first of {local.year}-{local.month:02d}", zone))
    windows = {account: line.sliding_min() for account, line in accounts.items()}
    for (account, moment), group in deposits.items():
        line = accounts[account]
        vests_at = moment + hold
        total = sum((Decimal(e.data["amount"]) for e in group), Decimal(0))
        held = max(Decimal(0), min(total, windows[account].over(moment, vests_at) - line.before(moment)))
        for event in group:
            amount = Decimal(event.data["amount"])
            share = min(amount, held)
            held -= share
            earned = int((share / rules.deposit_unit).to_integral_value(ROUND_FLOOR))
            if event.data["product"] == "time" and event.data.get("term_months", 0) >= rules.long_time_deposit_months:
                earned *= rules.long_time_deposit_multiplier
            year = vests_at.astimezone(zone).year
            note = f"deposit of {amount} to {account} held {rules.deposit_hold_days} days ({share} kept)"
            items.append(
                (vests_at, EARN, event.position, LedgerLine(vests_at, "vest", earned, year, (event.event_id,), note))
            )
    items.sort(key=_ledger_order)
    return items


def _moment(item: tuple) -> dt.datetime:
    return item[0]


def _ledger_order(item: tuple) -> tuple[dt.datetime, int, int]:
    return item[0], item[1], item[2]


def _earn(event: RecordedEvent, points: int, note: str, zone: dt.tzinfo) -> tuple:
    year = event.occurred_at.astimezone(zone).year
    return (
        event.occurred_at,
        EARN,
        event.position,
        LedgerLine(event.occurred_at, "earn", points, year, (event.event_id,), note),
    )


def settle(items: list[tuple], policy: Policy, as_of: dt.datetime) -> PointsResult:
    """Run the ledger up to ``as_of``: at each instant its expiries, then earnings, then redemptions.

    Vestings after ``as_of`` are reported as pending.
    """
    cut = bisect_right(items, as_of, key=_moment)
    pending = tuple(
        PendingVest(item[0], item[3].points, item[3].event_ids[0])
        for item in items[cut:]
        if item[1] == EARN and item[3].kind == "vest"
    )
    items = items[:cut]
    years = policy.points.expiry_years
    zone = policy.zone
    buckets: dict[int, int] = {}
    sources: dict[int, list[UUID]] = {}
    ledger: list[LedgerLine] = []
    overdraft = 0

    expiries: dict[int, dt.datetime] = {}

    def expiry(year: int) -> dt.datetime:
        found = expiries.get(year)
        if found is None:
            found = expiries[year] = dt.datetime(year + years, 1, 1, tzinfo=zone).astimezone(dt.UTC)
        return found

    def expire_until(moment: dt.datetime) -> None:
        if not buckets or expiry(min(buckets)) > moment:
            return
        for year in sorted(buckets):
            if expiry(year) > moment:
                break
            left = buckets.pop(year)
            if left:
                ledger.append(
                    LedgerLine(
                        expiry(year),
                        "expire",
                        -left,
                        year,
                        tuple(sources[year]),
                        f"bucket {year} expired at the start of {year + years}",
                    )
                )

    for moment, kind, _position, item in items:
        expire_until(moment)
        if kind == EARN:
            if item.points:
                buckets[item.bucket] = buckets.get(item.bucket, 0) + item.points
                sources.setdefault(item.bucket, []).extend(item.event_ids)
            ledger.append(item)
            continue
        wanted = item.data["points"]
        taken: list[str] = []
        for year in sorted(buckets):
            if not wanted:
                break
            take = min(wanted, buckets[year])
            if take:
                buckets[year] -= take
                wanted -= take
                taken.append(f"{take} from {year}")
        if taken:
            ledger.append(
                LedgerLine(
                    moment,
                    "redeem",
                    -(item.data["points"] - wanted),
                    None,
                    (item.event_id,),
                    f"{item.data['reward']}: " + ", ".join(taken),
                )
            )
        if wanted:
            overdraft += wanted
            ledger.append(
                LedgerLine(
                    moment,
                    "overdraft",
                    -wanted,
                    None,
                    (item.event_id,),
                    f"{wanted} points not covered by any bucket (after a correction or a late withdrawal)",
                )
            )
    expire_until(as_of)
    nonempty = [expiry(year) for year, left in buckets.items() if left]
    upcoming = [p.vests_at for p in pending] + nonempty
    return PointsResult(
        available=sum(buckets.values()) - overdraft,
        buckets={year: left for year, left in sorted(buckets.items())},
        overdraft=overdraft,
        ledger=tuple(ledger),
        pending=pending,
        next_change_at=min(upcoming) if upcoming else None,
    )
