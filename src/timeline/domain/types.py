"""The closed vocabularies of the domain as enums, and each event type's data as a typed record.

The enums are ``StrEnum``: a member is its text (``EventType.DEPOSIT_MADE == "deposit.made"``), so stored
events, JSON and database columns keep the strings they always had. Tier ids are not here: they are policy
data (``TierPolicy.tiers``), validated where the policy is loaded.

A record holds the data fields of an event that the rules read, with their domain types (money as
``Decimal``, dates, UUIDs), read once from the JSON form of ``RecordedEvent.data`` the first time a fold
needs it. Each field is a non-PII field of the type's model (a test checks it): PII may read as erased or
encrypted, and no rule reads it. Records are named tuples: immutable, and the cheapest to build (a fold
builds one per money event; a frozen dataclass costs twice as much).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import UUID

from timeline.domain.events import DATA_MODELS


class EventType(StrEnum):
    """Every event type of POLICY §1 (checked against :data:`timeline.domain.events.DATA_MODELS` on import)."""

    CUSTOMER_REGISTERED = "customer.registered"
    CUSTOMER_PROFILE_UPDATED = "customer.profile_updated"
    DEPOSIT_MADE = "deposit.made"
    WITHDRAWAL_MADE = "withdrawal.made"
    VISIT_RECORDED = "visit.recorded"
    GREETING_SENT = "greeting.sent"
    COMPLAINT_FILED = "complaint.filed"
    COMPLAINT_RESOLVED = "complaint.resolved"
    REFERRAL_MADE = "referral.made"
    REFERRAL_QUALIFIED = "referral.qualified"
    SURVEY_COMPLETED = "survey.completed"
    FOLLOWUP_SCHEDULED = "followup.scheduled"
    FOLLOWUP_COMPLETED = "followup.completed"
    POINTS_REDEEMED = "points.redeemed"
    CORRECTION_RECORDED = "correction.recorded"
    CUSTOMER_ERASED = "customer.erased"


if [*EventType] != [*DATA_MODELS]:
    raise ImportError(f"EventType {[*EventType]} differs from the event models {[*DATA_MODELS]}")


class Stage(StrEnum):
    """Lifecycle stages of POLICY §4, in the order their rules are tried."""

    PROSPECT = "prospect"
    CHURNED = "churned"
    AT_RISK = "at_risk"
    LOYAL = "loyal"
    ESTABLISHED = "established"
    NEW = "new"


class RuleCode(StrEnum):
    """The rule an explanation names (POLICY §4, §8); the value is the code the explanation prints."""

    TIER_START = "registered"
    TIER_UPGRADE = "upgrade after hold"
    TIER_DOWNGRADE = "downgrade after grace period"

    PROSPECT = "1"
    CHURNED = "2"
    AT_RISK = "3"
    STALE_COMPLAINT = "3a"
    AUM_DROP = "3b"
    SILENCE = "3c"
    LOYAL = "4"
    ESTABLISHED = "5"
    NEW = "6"

    DEPOSIT_HELD = "deposit held"
    REFERRAL_QUALIFIED = "referral qualified"
    BIRTHDAY_GREETING = "birthday greeting"
    MONTHLY_SURVEY = "monthly survey"
    BUCKET_EXPIRY = "bucket expiry"
    REDEMPTION = "redemption"
    OVERDRAFT = "overdraft"


class Registration(NamedTuple):
    branch_id: str
    relationship_manager: str


class ProfileUpdate(NamedTuple):
    relationship_manager: str | None


class Deposit(NamedTuple):
    account_id: str
    amount: Decimal
    product: str
    term_months: int | None


class Withdrawal(NamedTuple):
    account_id: str
    amount: Decimal


class Greeting(NamedTuple):
    occasion: str


class ComplaintFiling(NamedTuple):
    complaint_id: str


class ComplaintResolution(NamedTuple):
    complaint_id: str


class Qualification(NamedTuple):
    referred_customer_id: str


class FollowupScheduling(NamedTuple):
    followup_id: str
    due_date: dt.date
    reason: str


class FollowupCompletion(NamedTuple):
    followup_id: str


class Redemption(NamedTuple):
    points: int
    reward: str


class Correction(NamedTuple):
    voids_event_id: UUID


Record = (
    Registration
    | ProfileUpdate
    | Deposit
    | Withdrawal
    | Greeting
    | ComplaintFiling
    | ComplaintResolution
    | Qualification
    | FollowupScheduling
    | FollowupCompletion
    | Redemption
    | Correction
)

_new = tuple.__new__
"""Builds a record without the named tuple's own ``__new__`` (a Python call per event)."""

RECORDS: dict[str, Callable[[dict[str, Any]], Record]] = {
    EventType.CUSTOMER_REGISTERED: lambda d: _new(Registration, (d["branch_id"], d["relationship_manager"])),
    EventType.CUSTOMER_PROFILE_UPDATED: lambda d: _new(ProfileUpdate, (d.get("relationship_manager"),)),
    EventType.DEPOSIT_MADE: lambda d: _new(
        Deposit, (d["account_id"], Decimal(d["amount"]), d["product"], d.get("term_months"))
    ),
    EventType.WITHDRAWAL_MADE: lambda d: _new(Withdrawal, (d["account_id"], Decimal(d["amount"]))),
    EventType.GREETING_SENT: lambda d: _new(Greeting, (d["occasion"],)),
    EventType.COMPLAINT_FILED: lambda d: _new(ComplaintFiling, (d["complaint_id"],)),
    EventType.COMPLAINT_RESOLVED: lambda d: _new(ComplaintResolution, (d["complaint_id"],)),
    EventType.REFERRAL_QUALIFIED: lambda d: _new(Qualification, (d["referred_customer_id"],)),
    EventType.FOLLOWUP_SCHEDULED: lambda d: _new(
        FollowupScheduling, (d["followup_id"], dt.date.fromisoformat(d["due_date"]), d["reason"])
    ),
    EventType.FOLLOWUP_COMPLETED: lambda d: _new(FollowupCompletion, (d["followup_id"],)),
    EventType.POINTS_REDEEMED: lambda d: _new(Redemption, (d["points"], d["reward"])),
    EventType.CORRECTION_RECORDED: lambda d: _new(Correction, (UUID(d["voids_event_id"]),)),
}
"""How each record is read from the JSON form of its type's data (the types whose data no rule reads have none)."""
