"""State-dependent acceptance rules of POLICY §2, as a guard kept up to date per stream.

A :class:`Guard` folds a customer's stored history once, then decides each
new event in O(1) for events in business order (a late event costs a scan of
the instants after it). It is pure: the ingestion shell feeds it the stream
and appends what it admits.

It keeps what the checks read in compact form — balances as integer cents
at integer microseconds, the instants of lifecycle ids and redemptions, the
registration, what each counted point event earns or redeems
(:mod:`timeline.projections.points_summary`) — and no event beyond the
registration: the one rare check that reads a past event asks the caller for
just that (a correction its target), so a process can hold the guards of many
streams in little memory and a check reads at most a row.
"""

from __future__ import annotations

import datetime as dt
import functools
from array import array
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from timeline.domain.errors import RejectedEvent, UnknownTarget
from timeline.domain.identity import check_identity
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import Correction, Deposit, EventType, Redemption, Withdrawal
from timeline.domain.wording import instant, money
from timeline.projections.balances import signed_amount
from timeline.projections.points import POINT_TYPES
from timeline.projections.points_summary import PointFacts

UNVOIDABLE = frozenset(
    {
        EventType.CUSTOMER_REGISTERED,
        EventType.CORRECTION_RECORDED,
        EventType.CUSTOMER_ERASED,
        EventType.REFERRAL_QUALIFIED,
    }
)
LIFECYCLES = {
    EventType.COMPLAINT_FILED: ("complaint", "complaint_id", "filed"),
    EventType.COMPLAINT_RESOLVED: ("complaint", "complaint_id", "resolved"),
    EventType.FOLLOWUP_SCHEDULED: ("follow-up", "followup_id", "scheduled"),
    EventType.FOLLOWUP_COMPLETED: ("follow-up", "followup_id", "completed"),
}
"""What opens or closes an id: the noun, the record field holding the id, the verb."""
OPENERS = frozenset({EventType.COMPLAINT_FILED, EventType.FOLLOWUP_SCHEDULED})
MONEY = frozenset({EventType.DEPOSIT_MADE, EventType.WITHDRAWAL_MADE})
EARNING = POINT_TYPES - MONEY - {EventType.POINTS_REDEEMED}
"""The point types :meth:`Guard.record` reaches last: qualifications, greetings, surveys."""
_CORRECTION, _ERASED, _REDEEMED = EventType.CORRECTION_RECORDED, EventType.CUSTOMER_ERASED, EventType.POINTS_REDEEMED
_DEPOSIT = EventType.DEPOSIT_MADE
"""Module names for what :meth:`Guard.record` compares every event with (an enum attribute costs 0.1 µs in 3.11)."""
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class PastEvents(Protocol):
    """The events of one stream as it stands (stored, plus what the caller admitted since), read on demand."""

    def event(self, event_id: UUID) -> RecordedEvent | None:
        """The stream's event with this id, if it has one."""


class _Listed:
    """:class:`PastEvents` over a history list the caller keeps growing."""

    def __init__(self, history: list[RecordedEvent]) -> None:
        self.history = history

    def event(self, event_id: UUID) -> RecordedEvent | None:
        return next((e for e in self.history if e.event_id == event_id), None)


def _micros(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _instant(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def _cents(amount: Decimal) -> int:
    return int(amount.scaleb(2))  # money has at most two places (timeline.domain.money)


def _money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


@dataclass(slots=True)
class _Account:
    """One account's counted movements: net change in cents per instant (in microseconds), ascending."""

    instants: array = field(default_factory=lambda: array("q"))
    deltas: array = field(default_factory=lambda: array("q"))
    total: int = 0

    def lowest_after(self, moment: dt.datetime, change: int) -> tuple[int, dt.datetime]:
        """The lowest balance (cents) at any instant ≥ ``moment`` if ``change`` were applied at ``moment``."""
        at = _micros(moment)
        start = bisect_left(self.instants, at)
        balance = self.total + change
        lowest: int | None = None
        when = at
        for index in range(len(self.instants) - 1, start - 1, -1):
            if lowest is None or balance < lowest:
                lowest, when = balance, self.instants[index]
            balance -= self.deltas[index]
        if start == len(self.instants) or self.instants[start] != at:
            if lowest is None or balance < lowest:
                lowest, when = balance, at
        assert lowest is not None
        return lowest, _instant(when)

    def move(self, at: int, change: int) -> None:
        """Apply ``change`` (cents) at instant ``at`` (microseconds)."""
        index = bisect_left(self.instants, at)
        if index < len(self.instants) and self.instants[index] == at:
            self.deltas[index] += change
        else:
            self.instants.insert(index, at)
            self.deltas.insert(index, change)
        self.total += change


class _Mark:
    """A counted opener (filing, scheduling) or closer (resolution, completion): its id and instant."""

    __slots__ = ("event_id", "occurred_at")

    def __init__(self, event: RecordedEvent) -> None:
        self.event_id = event.event_id.int
        self.occurred_at = event.occurred_at


@dataclass(slots=True)
class _Lifecycle:
    """The counted opener and closer of one complaint or follow-up id."""

    opener: _Mark | None = None
    closer: _Mark | None = None


class Guard:
    """Decides and records the events of one customer's stream."""

    def __init__(
        self,
        policy: Policy,
        history: list[RecordedEvent],
        past: PastEvents | None = None,
        versions: Callable[[], PolicyTimeline] | None = None,
    ) -> None:
        """``history``: the stream as stored, folded once; the caller then records each event it stores.

        ``past``: the stream's events on demand, for the check that reads a past event. Without it the
        guard reads ``history`` itself, which the caller keeps growing with what it records.
        ``versions``: the policy versions in force as known now, asked at each redemption (a caller re-reads
        them when one is published); without it ``policy`` decides for all time.
        """
        self.policy = policy
        self._versions = versions if versions is not None else _for_all_time(policy)
        self._past: PastEvents = past if past is not None else _Listed(history)
        self._voided: set[int] = set()
        """Event ids (as integers: they hash in C) voided by a counted correction."""
        self._accounts: dict[str, _Account] = {}
        self._ids: dict[tuple[str, str], _Lifecycle] = {}
        self._redemptions: list[dt.datetime] = []
        self._points = PointFacts(policy.zone)
        """What the counted events that earn or redeem points (:data:`POINT_TYPES`) earn or redeem."""
        self._registration: RecordedEvent | None = None
        """The stream's first event, if it is a registration."""
        self._started = False
        self._erased = False
        """Whether the last event other than a correction is an erasure."""
        self._folding: dict[int, RecordedEvent] | None = {e.event_id.int: e for e in history}
        """While folding ``history``: its events by id, the targets its corrections void."""
        for event in history:
            self.record(event)
        self._folding = None

    def check(self, event: RecordedEvent) -> None:
        """Raise :class:`RejectedEvent` if ``event`` may not be stored after this stream."""
        check_identity(self._registration, self._erased, event)
        kind = event.type
        if kind == EventType.WITHDRAWAL_MADE:
            withdrawal: Withdrawal = event.record
            amount = withdrawal.amount
            self._check_balance(
                withdrawal.account_id, event.occurred_at, -_cents(amount), f"withdrawal of {self._cash(_cents(amount))}"
            )
        elif kind in LIFECYCLES:
            self._check_lifecycle(event)
        elif kind == EventType.POINTS_REDEEMED:
            self._check_redemption(event)
        elif kind == EventType.CORRECTION_RECORDED:
            self._check_correction(event)
        elif kind == EventType.CUSTOMER_ERASED:
            open_accounts = {a: acc.total for a, acc in self._accounts.items() if acc.total}
            if open_accounts:
                listing = ", ".join(f"{a} {self._cash(v)}" for a, v in sorted(open_accounts.items()))
                raise RejectedEvent(f"customer cannot be erased while accounts hold money: {listing}")

    def record(self, event: RecordedEvent) -> None:
        """Take an admitted (or already stored) event into account."""
        kind = event.type
        if not self._started:
            self._started = True
            self._registration = event if kind == EventType.CUSTOMER_REGISTERED else None
        if kind != _CORRECTION:
            self._erased = kind == _ERASED
        if kind in MONEY:
            record = event.record
            at, cents = _micros(event.occurred_at), _cents(record.amount)
            if kind == _DEPOSIT:
                self._account(record.account_id).move(at, cents)
                self._points.deposit(record, at, cents, event.version)
            else:
                self._account(record.account_id).move(at, -cents)
        elif kind in LIFECYCLES:
            entry = self._ids.setdefault(_key(event), _Lifecycle())
            if kind in OPENERS:
                entry.opener = _Mark(event)
            else:
                entry.closer = _Mark(event)
        elif kind == _REDEEMED:
            insort(self._redemptions, event.occurred_at)
            self._points.add(event)
        elif kind == _CORRECTION:
            target = self._target(event.record.voids_event_id)
            assert target is not None, "a recorded correction names an event of its stream"
            self._void(target)
        elif kind in EARNING:
            self._points.add(event)

    def _target(self, event_id: UUID) -> RecordedEvent | None:
        """The event of this stream with ``event_id``, if any."""
        if self._folding is not None:
            return self._folding.get(event_id.int)
        return self._past.event(event_id)

    def _void(self, target: RecordedEvent) -> None:
        self._voided.add(target.event_id.int)
        kind = target.type
        if kind in POINT_TYPES:
            self._points.void(target.version)
        if kind in MONEY:
            self._account(target.record.account_id).move(_micros(target.occurred_at), -_cents(signed_amount(target)))
        elif kind in LIFECYCLES:
            entry = self._ids[_key(target)]
            if kind in OPENERS:
                entry.opener = None
            else:
                entry.closer = None
        elif kind == EventType.POINTS_REDEEMED:
            self._redemptions.remove(target.occurred_at)

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        return account

    def _check_balance(self, account_id: str, moment: dt.datetime, change: int, what: str) -> None:
        account = self._accounts.get(account_id) or _Account()
        lowest, when = account.lowest_after(moment, change)
        if lowest < 0:
            raise RejectedEvent(
                f"{what} would make account {account_id} negative ({self._cash(lowest)} at {self._local(when)})"
            )

    def _local(self, moment: dt.datetime) -> str:
        return instant(moment, self.policy.zone)

    def _cash(self, cents: int) -> str:
        return money(_money(cents), self.policy.currency)

    def _check_lifecycle(self, event: RecordedEvent) -> None:
        noun, id_field, verb = LIFECYCLES[event.type]
        key = _key(event)
        entry = self._ids.get(key) or _Lifecycle()
        ident = getattr(event.record, id_field)
        if event.type in OPENERS:
            used = entry.opener or entry.closer
            if used is not None:
                raise RejectedEvent(f"{id_field} {ident} is already used by event {UUID(int=used.event_id)}")
            return
        if entry.opener is None or entry.opener.occurred_at > event.occurred_at:
            raise RejectedEvent(
                f"{noun} {ident} has no counted {_opened(noun)} at or before {self._local(event.occurred_at)}"
            )
        if entry.closer is not None:
            raise RejectedEvent(f"{noun} {ident} is already {verb} by event {UUID(int=entry.closer.event_id)}")

    def _check_redemption(self, event: RecordedEvent) -> None:
        if self._redemptions and self._redemptions[-1] > event.occurred_at:
            raise RejectedEvent(
                f"points.redeemed at {self._local(event.occurred_at)} is earlier than a counted redemption at "
                f"{self._local(self._redemptions[-1])}"
            )
        available = self._points.available(event.occurred_at, self._accounts, self._versions())
        redemption: Redemption = event.record
        if redemption.points > available:
            raise RejectedEvent(
                f"cannot redeem {redemption.points} points: {available} available at {self._local(event.occurred_at)}"
            )

    def _check_correction(self, event: RecordedEvent) -> None:
        correction: Correction = event.record
        target_id = correction.voids_event_id
        target = self._target(target_id)
        if target is None:
            raise UnknownTarget(target_id)
        if target_id.int in self._voided:
            raise RejectedEvent(f"event {target_id} is already voided")
        if target.type in UNVOIDABLE:
            raise RejectedEvent(f"a {target.type} event cannot be voided")
        if target.type in OPENERS:
            closer = self._ids[_key(target)].closer
            if closer is not None:
                noun, id_field, _ = LIFECYCLES[target.type]
                closer_type = next(k for k, v in LIFECYCLES.items() if v[0] == noun and k not in OPENERS)
                raise RejectedEvent(
                    f"{noun} {getattr(target.record, id_field)} already has a counted {closer_type} "
                    f"({UUID(int=closer.event_id)}); void that first"
                )
        if target.type == EventType.DEPOSIT_MADE:
            deposit: Deposit = target.record
            self._check_balance(
                deposit.account_id, target.occurred_at, -_cents(deposit.amount), f"voiding deposit {target_id}"
            )


@functools.cache
def _for_all_time(policy: Policy) -> Callable[[], PolicyTimeline]:
    """``policy`` as the one version in force (one timeline for every guard of that policy)."""
    timeline = PolicyTimeline.single(policy)
    return lambda: timeline


def _key(event: RecordedEvent) -> tuple[str, str]:
    noun, id_field, _ = LIFECYCLES[event.type]
    return noun, getattr(event.record, id_field)


def _opened(noun: str) -> str:
    return "filing" if noun == "complaint" else "scheduling"
