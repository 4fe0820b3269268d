"""Account balances and AUM as step functions of business time (POLICY §3, §4).

A quantity at instant t is read after every counted event with
``occurred_at`` ≤ t, so a line holds one value per instant at which money
moved: the value after all of that instant's events.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import Deposit, EventType, Withdrawal

ZERO = Decimal(0)
MONEY_TYPES = frozenset({EventType.DEPOSIT_MADE, EventType.WITHDRAWAL_MADE})


def signed_amount(event: RecordedEvent) -> Decimal:
    """What a deposit or a withdrawal adds to its account."""
    record: Deposit | Withdrawal = event.record
    return record.amount if type(record) is Deposit else -record.amount


@dataclass(slots=True)
class StepLine:
    """A value after each instant it changed at (ascending), and the events that moved it there."""

    instants: list[dt.datetime] = field(default_factory=list)
    values: list[Decimal] = field(default_factory=list)
    movers: list[list[UUID]] = field(default_factory=list)

    def add(self, instant: dt.datetime, delta: Decimal, event_id: UUID) -> None:
        """Apply a movement; instants must come in ascending order."""
        if self.instants and self.instants[-1] == instant:
            self.values[-1] += delta
            self.movers[-1].append(event_id)
            return
        self.instants.append(instant)
        self.values.append((self.values[-1] if self.values else ZERO) + delta)
        self.movers.append([event_id])

    def copy(self) -> StepLine:
        """A line that can grow without changing this one (``add`` only ever touches the last movers)."""
        movers = self.movers.copy()
        if movers:
            movers[-1] = movers[-1].copy()
        return StepLine(self.instants.copy(), self.values.copy(), movers)

    def at(self, moment: dt.datetime) -> Decimal:
        index = bisect_right(self.instants, moment) - 1
        return self.values[index] if index >= 0 else ZERO

    def _window(self, start: dt.datetime, end: dt.datetime) -> list[Decimal]:
        """Every value held at some instant of the closed interval [start, end]."""
        first = bisect_right(self.instants, start)
        last = bisect_right(self.instants, end)
        return [self.at(start), *self.values[first:last]]

    def max_over(self, start: dt.datetime, end: dt.datetime) -> Decimal:
        return max(self._window(start, end))

    def argmax_over(self, start: dt.datetime, end: dt.datetime) -> tuple[Decimal, dt.datetime]:
        """The highest value over [start, end] and the first instant it was reached."""
        best, when = self.at(start), start
        for index in range(bisect_right(self.instants, start), bisect_right(self.instants, end)):
            if self.values[index] > best:
                best, when = self.values[index], self.instants[index]
        return best, when

    def movers_between(self, start: dt.datetime, end: dt.datetime) -> list[UUID]:
        """Events that moved the value at instants in [start, end]."""
        first = bisect_left(self.instants, start)
        last = bisect_right(self.instants, end)
        return [event_id for ids in self.movers[first:last] for event_id in ids]

    def last_change_at_or_before(self, moment: dt.datetime) -> dt.datetime | None:
        index = bisect_right(self.instants, moment) - 1
        return self.instants[index] if index >= 0 else None


class Balances:
    """Every account's balance line and their sum, the AUM line; grown by counted money events in business order."""

    __slots__ = ("accounts", "aum", "_shared")

    def __init__(self, accounts: dict[str, StepLine] | None = None, aum: StepLine | None = None) -> None:
        self.accounts: dict[str, StepLine] = {} if accounts is None else accounts
        self.aum = StepLine() if aum is None else aum
        self._shared: set[str | None] = set()
        """Lines (by account, None for AUM) still shared with the balances this was copied from."""

    def add(self, event: RecordedEvent) -> None:
        """Apply one deposit or withdrawal (at or after every instant applied so far).

        ``StepLine.add`` on the account's line and on the AUM line, inlined: it runs for every money event.
        """
        record: Deposit | Withdrawal = event.record
        delta = record.amount if type(record) is Deposit else -record.amount
        instant, event_id = event.occurred_at, event.event_id
        account = record.account_id
        if self._shared:
            self._own(account)
        line = self.accounts.get(account)
        if line is None:
            line = self.accounts[account] = StepLine()
        for target in (line, self.aum):
            instants, values = target.instants, target.values
            if instants and instants[-1] == instant:
                values[-1] += delta
                target.movers[-1].append(event_id)
            else:
                instants.append(instant)
                values.append((values[-1] if values else ZERO) + delta)
                target.movers.append([event_id])

    def copy(self) -> Balances:
        """Balances that can grow without changing these: a line is copied when it first moves."""
        other = Balances(self.accounts.copy(), self.aum)
        other._shared = {*self.accounts, None}
        return other

    def _own(self, account: str) -> None:
        shared = self._shared
        if None in shared:
            shared.discard(None)
            self.aum = self.aum.copy()
        if account in shared:
            shared.discard(account)
            self.accounts[account] = self.accounts[account].copy()


def balances(events: Iterable[RecordedEvent]) -> Balances:
    """Fold counted events in business order into balance lines."""
    result = Balances()
    for event in events:
        if event.type in MONEY_TYPES:
            result.add(event)
    return result
