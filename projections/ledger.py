"""The points ledger (积分), POLICY §4: earnings and redemptions run in order into yearly buckets that expire.

Its lines — every earn, vest, expire, redeem and overdraft with the events
behind it — explain each balance. What earns and what redeems comes from
:mod:`timeline.projections.points`.
"""

from __future__ import annotations

import datetime as dt
import functools
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from uuid import UUID

from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import Redemption, RuleCode

EARN, REDEEM = 0, 1


@dataclass(slots=True)
class LedgerLine:
    at: dt.datetime
    kind: str
    """``vest`` (deposit held 30 days), ``earn``, ``expire``, ``redeem`` or ``overdraft``."""
    rule: RuleCode
    """The rule of POLICY §4 behind the line (which earning, expiry, redemption or overdraft)."""
    points: int
    """Signed: what the line adds to the available points."""
    bucket: int | None
    event_ids: tuple[UUID, ...]
    note: str
    policy: str | None = None
    """The version the line was made under, where several are in force (None: the one policy)."""


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


Item = tuple[dt.datetime, int, int, "LedgerLine | RecordedEvent"]
"""An earning (a :class:`LedgerLine`) or a redemption (its event) in ledger order: instant, EARN before
REDEEM, stored order."""


item_moment = itemgetter(0)
"""The instant of an item."""


def settle(items: list[Item], policy: Policy, as_of: dt.datetime) -> PointsResult:
    """Run the ledger up to ``as_of``: at each instant its expiries, then earnings, then redemptions.

    Vestings after ``as_of`` are reported as pending.
    """
    cut = items_through(items, as_of)
    run = LedgerRun(policy)
    run.advance(items, cut)
    return run.close(items, cut, as_of)


def items_before(items: list[Item], moment: dt.datetime) -> int:
    """How many items come before ``moment``."""
    return bisect_left(items, moment, key=item_moment)


def items_through(items: list[Item], moment: dt.datetime) -> int:
    """How many items come at or before ``moment``."""
    return bisect_right(items, moment, key=item_moment)


class LedgerRun:
    """The ledger run over the first ``done`` items: a point to go on from, for any later ``as_of``.

    A projection keeps the run over its items before its last event (they
    are the same for every question it answers), and the projection of more
    events goes on from it: items before the first new event do not change.
    """

    __slots__ = (
        "policy",
        "versions",
        "expires",
        "expiry",
        "done",
        "buckets",
        "sources",
        "lines",
        "overdraft",
        "first_expiry",
    )

    def __init__(self, policy: Policy, versions: PolicyTimeline | None = None) -> None:
        self.policy = policy
        self.versions = versions
        """Several versions in force: a bucket keeps the expiry of the version in force when it was opened
        (its first earning), recorded in ``expires``; else ``policy`` dates every bucket."""
        self.expires: dict[int, tuple[dt.datetime, str]] = {}
        self.expiry = _expiries(policy.zone, policy.points.expiry_years) if versions is None else self._opened_expiry
        self.done = 0
        self.buckets: dict[int, int] = {}
        self.sources: dict[int, list[UUID]] = {}
        self.lines: list[LedgerLine] = []
        self.overdraft = 0
        self.first_expiry: dt.datetime | None = None
        """When the oldest bucket expires (None: no bucket)."""

    def copy(self) -> LedgerRun:
        other = LedgerRun.__new__(LedgerRun)
        other.policy, other.versions, other.done = self.policy, self.versions, self.done
        other.expires = self.expires.copy()
        other.expiry = self.expiry if self.versions is None else other._opened_expiry
        other.buckets = self.buckets.copy()
        other.sources = {year: ids.copy() for year, ids in self.sources.items()}
        other.lines = self.lines.copy()
        other.overdraft, other.first_expiry = self.overdraft, self.first_expiry
        return other

    def advance(self, items: list[Item], stop: int) -> None:
        """Run ``items[done:stop]`` (``items`` starts with the ones already run)."""
        buckets, sources, lines, expiry = self.buckets, self.sources, self.lines, self.expiry
        for index in range(self.done, stop):
            moment, kind, _position, item = items[index]
            if self.first_expiry is not None and self.first_expiry <= moment:
                self._expire_until(moment)
            if kind == EARN:
                if item.points:
                    bucket = item.bucket
                    if bucket in buckets:
                        buckets[bucket] += item.points
                        sources[bucket].extend(item.event_ids)
                    else:
                        if self.versions is not None and bucket not in self.expires:
                            self._open(bucket, moment)
                        buckets[bucket] = item.points
                        sources.setdefault(bucket, []).extend(item.event_ids)
                        self.first_expiry = expiry(min(buckets))
                lines.append(item)
                continue
            redemption: Redemption = item.record
            wanted = redemption.points
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
                lines.append(
                    LedgerLine(
                        moment,
                        "redeem",
                        RuleCode.REDEMPTION,
                        -(redemption.points - wanted),
                        None,
                        (item.event_id,),
                        f"{redemption.reward}: " + ", ".join(taken),
                    )
                )
            if wanted:
                self.overdraft += wanted
                lines.append(
                    LedgerLine(
                        moment,
                        "overdraft",
                        RuleCode.OVERDRAFT,
                        -wanted,
                        None,
                        (item.event_id,),
                        f"{wanted} points not covered by any bucket (after a correction or a late withdrawal)",
                    )
                )
        self.done = max(self.done, stop)

    def close(self, items: list[Item], cut: int, as_of: dt.datetime) -> PointsResult:
        """The points at ``as_of``, this run having done the ``cut`` items up to it; vestings after are pending."""
        pending = tuple(
            PendingVest(item[0], item[3].points, item[3].event_ids[0])
            for item in items[cut:]
            if item[1] == EARN and item[3].kind == "vest"
        )
        if self.first_expiry is not None and self.first_expiry <= as_of:
            self._expire_until(as_of)
        buckets, expiry = self.buckets, self.expiry
        nonempty = [expiry(year) for year, left in buckets.items() if left]
        upcoming = [p.vests_at for p in pending] + nonempty
        return PointsResult(
            available=sum(buckets.values()) - self.overdraft,
            buckets={year: left for year, left in sorted(buckets.items())},
            overdraft=self.overdraft,
            ledger=tuple(self.lines),
            pending=pending,
            next_change_at=min(upcoming) if upcoming else None,
        )

    def _open(self, bucket: int, moment: dt.datetime) -> None:
        """Date a new bucket with the expiry of the version in force at its first earning."""
        assert self.versions is not None
        version = self.versions.at(moment)
        expires = _expiries(version.zone, version.points.expiry_years)(bucket)
        self.expires[bucket] = (expires, version.id)

    def _opened_expiry(self, year: int) -> dt.datetime:
        return self.expires[year][0]

    def _expire_until(self, moment: dt.datetime) -> None:
        """Expire the buckets due by ``moment``, oldest first."""
        buckets, expiry, years = self.buckets, self.expiry, self.policy.points.expiry_years
        for year in sorted(buckets):
            if expiry(year) > moment:
                break
            left = buckets.pop(year)
            if left:
                self.lines.append(
                    LedgerLine(
                        expiry(year),
                        "expire",
                        RuleCode.BUCKET_EXPIRY,
                        -left,
                        year,
                        tuple(self.sources[year]),
                        f"bucket {year} expired at the start of {year + years}"
                        if self.versions is None
                        else f"bucket {year} expired at the start of {expiry(year).astimezone(self.policy.zone).year} "
                        f"(the expiry of policy {self.expires[year][1]}, in force when it was opened)",
                        None if self.versions is None else self.expires[year][1],
                    )
                )
        self.first_expiry = expiry(min(buckets)) if buckets else None


@functools.cache
def _expiries(zone: dt.tzinfo, years: int) -> Callable[[int], dt.datetime]:
    """When the bucket of a year expires: the start of the year ``years`` later in ``zone``."""

    @functools.cache
    def expiry(year: int) -> dt.datetime:
        return dt.datetime(year + years, 1, 1, tzinfo=zone).astimezone(dt.UTC)

    return expiry
