"""An RM's worklist: whom to call today, for ``timeline worklist`` and the worklist page.

The customers are those with the relationship manager as of ``as_of``. Windows
are exact durations (RULES §3) except birthdays, which are calendar dates in
the policy's time zone: those from the date of ``as_of`` to the date of
``as_of`` + 14 days. Dates of birth are personal data: they are read through
the key ring, as ``history`` reads them; an erased customer is left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from timeline.application.keyring import KeyRing
from timeline.application.report_scope import NamedTables, customers_with
from timeline.application.report_table import ReportTable, count, heading_instant, instant, key_person, money, table
from timeline.application.states import StateReader
from timeline.domain.policy import Policy
from timeline.domain.types import Stage
from timeline.projections.state import CustomerState

SOON = dt.timedelta(days=14)
"""How far ahead the worklist looks: follow-ups, birthdays, tier changes by time alone."""
UNCONTACTED = dt.timedelta(days=90)
"""A key person with no visit or greeting in (as_of − 90 days, as_of] is listed."""


@dataclass(frozen=True)
class Worklist(NamedTables):
    rm: str
    as_of: dt.datetime
    tables: tuple[ReportTable, ...]


def worklist(
    reader: StateReader, policy: Policy, rm: str, as_of: dt.datetime, now: dt.datetime, *, keys: KeyRing
) -> Worklist:
    """The worklist of ``rm`` as of business time ``as_of``, as known at system time ``now``."""
    mine = customers_with(reader.all_states(as_of, now), policy, as_of, rm=rm)
    return worklist_of(
        mine, birth_dates(reader, keys, (s.customer_id for s in mine if not s.erased)), policy, rm, as_of
    )


def birth_dates(reader: StateReader, keys: KeyRing, customer_ids: Iterable[str]) -> dict[str, dt.date]:
    """Each customer's date of birth from their registration (version 1), decrypted; erased ones are absent."""
    wanted = [(c, 1) for c in customer_ids]
    rows = reader.store.read_rows(wanted)
    births = {}
    for event in keys.decode([rows[k] for k in wanted if k in rows], with_hash=False):
        value = event.data.get("birth_date")
        if isinstance(value, str):  # else the erased (or, without a key, the encrypted) marker
            births[event.customer_id] = dt.date.fromisoformat(value)
    return births


def worklist_of(
    mine: Sequence[CustomerState], births: dict[str, dt.date], policy: Policy, rm: str, as_of: dt.datetime
) -> Worklist:
    """:func:`worklist` from the RM's states (as of ``as_of``) and their dates of birth."""
    live = [s for s in mine if not s.erased]
    tables = (
        at_risk(live),
        followups(live, as_of, policy, overdue=True),
        followups(live, as_of, policy, overdue=False),
        birthdays(live, births, as_of, policy),
        tier_changes(live, as_of, policy),
        uncontacted_key_persons(live, as_of, policy),
    )
    return Worklist(rm, as_of, tables)


def at_risk(states: Sequence[CustomerState]) -> ReportTable:
    risky = sorted((s for s in states if s.lifecycle.stage == Stage.AT_RISK), key=lambda s: (-s.aum, s.customer_id))
    rows = [(s.customer_id, key_person(s.key_person), s.tier.tier, money(s.aum), s.lifecycle.reason) for s in risky]
    columns = ("customer", "key person", "tier", "AUM (CNY)", "reason")
    return table("at-risk", f"My customers at risk: {count(len(risky))}", columns, rows, 0)


def followups(states: Sequence[CustomerState], as_of: dt.datetime, policy: Policy, overdue: bool) -> ReportTable:
    """Overdue follow-ups, or those due from the date of ``as_of`` to the date of ``as_of`` + 14 days."""
    last = (as_of + SOON).astimezone(policy.zone).date()
    chosen = sorted(
        ((f, s) for s in states for f in s.followups if f.overdue == overdue and (overdue or f.due_date <= last)),
        key=lambda item: (item[0].due_date, item[1].customer_id, item[0].followup_id),
    )
    rows = [
        (s.customer_id, key_person(s.key_person), f.followup_id, f.due_date.isoformat(), f.reason) for f, s in chosen
    ]
    columns = ("customer", "key person", "follow-up", "due", "reason")
    if overdue:
        return table("overdue-followups", f"My overdue follow-ups: {count(len(rows))}", columns, rows, 0)
    title = f"My follow-ups due by {last.isoformat()}: {count(len(rows))}"
    return table("upcoming-followups", title, columns, rows, 0)


def next_birthday(birth: dt.date, today: dt.date) -> dt.date:
    """The first birthday on or after ``today`` (29 February: the 28th in a common year)."""
    for year in (today.year, today.year + 1):
        try:
            day = birth.replace(year=year)
        except ValueError:
            day = dt.date(year, 2, 28)
        if day >= today:
            return day
    raise AssertionError("a birthday comes within a year")


def birthdays(
    states: Sequence[CustomerState], births: dict[str, dt.date], as_of: dt.datetime, policy: Policy
) -> ReportTable:
    today = as_of.astimezone(policy.zone).date()
    last = (as_of + SOON).astimezone(policy.zone).date()
    coming = []
    for s in states:
        birth = births.get(s.customer_id)
        if birth is not None and (day := next_birthday(birth, today)) <= last:
            coming.append((day, s, day.year - birth.year))
    coming.sort(key=lambda item: (item[0], item[1].customer_id))
    rows = [
        (s.customer_id, key_person(s.key_person), day.isoformat(), count((day - today).days), str(age))
        for day, s, age in coming
    ]
    columns = ("customer", "key person", "birthday", "in days", "turns")
    return table("birthdays", f"Birthdays to {last.isoformat()}: {count(len(rows))}", columns, rows, 0)


def tier_changes(states: Sequence[CustomerState], as_of: dt.datetime, policy: Policy) -> ReportTable:
    """Tier changes that time alone brings by ``as_of`` + 14 days (a pending upgrade or downgrade)."""
    horizon = as_of + SOON
    due = sorted(
        ((s.tier.pending, s) for s in states if s.tier.pending is not None and s.tier.pending.at <= horizon),
        key=lambda item: (item[0].at, item[1].customer_id),
    )
    rows = [
        (
            s.customer_id,
            key_person(s.key_person),
            f"{change.from_tier} → {change.to_tier}",
            instant(change.at, policy.zone),
            str(change.rule),
            money(s.aum),
        )
        for change, s in due
    ]
    columns = ("customer", "key person", "move", "at", "rule", "AUM (CNY)")
    title = f"Tier changes by time alone to {heading_instant(horizon, policy.zone)}: {count(len(rows))}"
    return table("tier-changes", title, columns, rows, 0)


def uncontacted_key_persons(states: Sequence[CustomerState], as_of: dt.datetime, policy: Policy) -> ReportTable:
    """Key persons whose last visit or greeting is at or before ``as_of`` − 90 days, or who never had one."""
    since = as_of - UNCONTACTED
    quiet = sorted(
        (
            s
            for s in states
            if s.key_person and (s.profile.last_contact_at is None or s.profile.last_contact_at <= since)
        ),
        key=lambda s: (s.profile.last_contact_at or s.registered_at, s.customer_id),
    )
    rows = [
        (
            s.customer_id,
            s.tier.tier,
            money(s.aum),
            instant(s.profile.last_contact_at, policy.zone) if s.profile.last_contact_at else "never",
        )
        for s in quiet
    ]
    columns = ("customer", "tier", "AUM (CNY)", "last visit or greeting")
    title = f"My key persons with no visit or greeting since {heading_instant(since, policy.zone)}: {count(len(rows))}"
    return table("key-persons-uncontacted", title, columns, rows, 0)
