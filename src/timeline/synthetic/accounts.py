"""A customer's money: the first deposit, cash flowing in and out, time deposits maturing, dormancy.

Balances are tracked in cents so that no withdrawal ever exceeds what an
account holds at its instant (POLICY §2); a duplicated deposit is never counted
in them, as it is voided by a correction a few days later.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

from timeline.synthetic.plan import Plan
from timeline.synthetic.simulation import DAY, EPOCH, HOUR, Agenda
from timeline.synthetic.vocab import TELLERS_PER_BRANCH, TERM_CUM, TERM_RATES, TERMS

DUPLICATE_DEPOSIT_SHARE = 0.004
"""Of the regular deposits, this share is keyed in twice."""
TIME_DEPOSIT_TARGET = 30_000
"""Yuan: customers aiming at less keep everything on demand."""
TIME_DEPOSIT_LEAST = 500_000
"""Cents (5,000 yuan): the smallest time deposit."""


def cents_of(rng: random.Random, yuan: float) -> int:
    """A plausible amount in cents: big ones round, small ones to the cent."""
    if yuan >= 20_000 and rng.random() < 0.8:
        cents = round(yuan / 1000) * 100_000
    elif yuan >= 1_000 and rng.random() < 0.7:
        cents = round(yuan / 100) * 10_000
    else:
        cents = int(yuan * 100)
    return max(cents, 100)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Banking(Agenda):
    """The money actions of a customer (mixed into :class:`timeline.synthetic.customers.Customer`)."""

    p: Plan
    rm_id: str
    churn_at: int
    target: float
    """Yuan of AUM the customer aims at; it drifts."""
    flow_mean: int
    flow_share: float

    def init_accounts(self) -> None:
        self.balances: dict[str, int] = {}
        self.aum = 0
        self.accounts = 0

    def wealthy(self) -> bool:
        """Whether the target now meets a tier served as high net worth or above (RMs push time deposits)."""
        policy = self.w.policy
        return policy.level(policy.rank(self.target)) >= 2

    def teller(self) -> str:
        return f"TL{self.p.branch + 1}{int(self.rng.random() * TELLERS_PER_BRANCH) + 1:02d}"

    def deposit(self, t: int, account: str, cents: int, term: int | None = None) -> str:
        data: dict[str, Any] = {"account_id": account, "amount": money(cents), "product": "demand"}
        if term is not None:
            data["product"] = "time"
            data["term_months"] = term
        event_id, _ = self.emit(t, "deposit.made", data, "core-banking", self.teller())
        self.balances[account] = self.balances.get(account, 0) + cents
        self.aum += cents
        return event_id

    def withdraw(self, t: int, account: str, cents: int) -> None:
        balance = self.balances[account]
        assert 0 < cents <= balance, (self.cid, account, cents, balance)
        self.emit(t, "withdrawal.made", {"account_id": account, "amount": money(cents)}, "core-banking", self.teller())
        self.balances[account] = balance - cents
        self.aum -= cents

    def correct(self, t: int, arg: tuple[str, str, str]) -> None:
        target, reason, source = arg
        self.emit(t, "correction.recorded", {"voids_event_id": target, "reason": reason}, source, self.rm_id)

    def first_deposit(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        yuan = self.target * rng.uniform(0.35, 0.85)
        if self.p.referred and rng.random() < 0.9:  # the referrer made sure it qualifies
            least = self.w.policy.referral_first_deposit
            yuan = max(yuan, rng.uniform(least, 3 * least))
        self.accounts = 1
        self.deposit(t, "A1", cents_of(rng, yuan))
        self.at(self.soon(t, 3 * DAY, 45 * DAY), self.top_up)
        self.after(t, self.flow_mean, self.cash_in)
        self.after(t, self.flow_mean, self.cash_out)
        if self.target >= TIME_DEPOSIT_TARGET:
            self.after(t, 45 * DAY if self.wealthy() else 90 * DAY, self.open_time_deposit)

    def top_up(self, t: int, _: Any) -> None:
        if t < self.churn_at:
            self.deposit(t, "A1", cents_of(self.rng, self.target * self.rng.uniform(0.1, 0.45)))

    def cash_in(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        self.target *= math.exp(rng.gauss(0, 0.04))
        share = self.flow_share * rng.uniform(0.3, 1.7)
        if self.aum < self.target * 80:  # AUM (cents) below 80% of target (yuan)
            share *= 1.8
        cents = cents_of(rng, self.target * share)
        self.deposit(t, "A1", cents)
        if rng.random() < DUPLICATE_DEPOSIT_SHARE:
            self.duplicate_deposit(t, cents)
        self.after(t, self.flow_mean, self.cash_in)

    def duplicate_deposit(self, t: int, cents: int) -> None:
        """The same deposit keyed in twice; the copy is voided a few days later."""
        fix = self.soon(t, HOUR, 5 * DAY)
        if fix > self.end_s or fix >= self.erase_at:
            return
        data = {"account_id": "A1", "amount": money(cents), "product": "demand"}
        copy_id, _ = self.emit(t, "deposit.made", data, "core-banking", self.teller())
        self.at(fix, self.correct, (copy_id, "柜面重复录入存款，冲正", "core-banking"))

    def cash_out(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        balance = self.balances.get("A1", 0)
        if rng.random() < 0.03:
            cents = int(balance * rng.uniform(0.6, 1.0))
        else:
            share = self.flow_share * rng.uniform(0.3, 1.7)
            if self.aum > self.target * 120:
                share *= 1.8
            cents = min(balance, cents_of(rng, self.target * share))
        if cents > 0:
            self.withdraw(t, "A1", cents)
        self.after(t, self.flow_mean, self.cash_out)

    def open_time_deposit(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        balance = self.balances.get("A1", 0)
        cents = cents_of(rng, balance / 100 * rng.uniform(0.3, 0.7))
        if TIME_DEPOSIT_LEAST <= cents <= balance:
            self.accounts += 1
            account = f"A{self.accounts}"
            term = rng.choices(TERMS, cum_weights=TERM_CUM)[0]
            self.withdraw(t, "A1", cents)
            self.deposit(t, account, cents, term)
            self.at(self.maturity(t, term), self.mature, (account, term))
        self.after(t, 60 * DAY if self.wealthy() else 120 * DAY, self.open_time_deposit)

    def maturity(self, t: int, term: int) -> int:
        d = self.w.date(t)
        month = d.month - 1 + term
        year, month = d.year + month // 12, month % 12 + 1
        day = min(d.day, 28)
        return (dt.date(year, month, day).toordinal() - EPOCH) * DAY + t % DAY

    def mature(self, t: int, arg: tuple[str, int]) -> None:
        account, term = arg
        principal = self.balances.get(account, 0)
        if t >= self.churn_at or principal == 0:
            return
        rng = self.rng
        interest = int(principal * TERM_RATES[term] * term / 1200)
        self.withdraw(t, account, principal)
        if rng.random() < 0.4:  # rolled over into the same account
            self.deposit(t, account, principal + interest, term)
            self.at(self.maturity(t, term), self.mature, (account, term))
        else:
            self.deposit(t, "A1", principal + interest)

    def churn(self, t: int, _: Any) -> None:
        """Dormancy: everything is withdrawn, then the customer goes silent."""
        for account, balance in sorted(self.balances.items()):
            if balance > 0:
                self.withdraw(t, account, balance)
