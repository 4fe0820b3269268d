"""Referral qualification (老带新), POLICY §5: a decision the engine records once.

Pure: given the counted referrals naming a customer R (from any referrer),
which referrers are erased, and R's counted events, decide whether a
referral qualifies now. The shell (``timeline.application.qualify``) gathers those
inputs after each commit and appends the ``referral.qualified`` event; its
id is derived from R, so only one can ever be stored for R.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent, iso
from timeline.domain.types import EventType

NAMESPACE = uuid.UUID("5c1a3f0e-8d2b-4e0f-9a57-2f7c6b1d9e40")


def qualification_id(referred_customer_id: str) -> uuid.UUID:
    """The one event id a qualification for this referred customer can have."""
    return uuid.uuid5(NAMESPACE, f"{EventType.REFERRAL_QUALIFIED}/{referred_customer_id}")


@dataclass(frozen=True, slots=True)
class Qualification:
    referrer_id: str
    referred_customer_id: str
    referral_event_id: uuid.UUID
    occurred_at: dt.datetime

    def event(self) -> dict[str, Any]:
        """The ``referral.qualified`` event, as the engine appends it to the referrer's stream."""
        return {
            "event_id": str(qualification_id(self.referred_customer_id)),
            "type": EventType.REFERRAL_QUALIFIED.value,
            "customer_id": self.referrer_id,
            "occurred_at": iso(self.occurred_at),
            "source": "timeline",
            "data": {
                "referred_customer_id": self.referred_customer_id,
                "referral_event_id": str(self.referral_event_id),
            },
        }


def decide(
    referred_id: str,
    referrals: Sequence[RecordedEvent],
    erased_referrers: Collection[str],
    referred_events: Sequence[RecordedEvent],
    versions: PolicyTimeline,
) -> Qualification | None:
    """The qualification that holds now, if any.

    ``referrals`` are the counted ``referral.made`` events naming R;
    ``referred_events`` are R's counted events in business order. The
    minimum first deposit is the one in force at R's first deposit (POLICY §9).
    """
    if not referrals:
        return None
    first = min(referrals, key=lambda e: (e.occurred_at, e.position))
    registration = next((e for e in referred_events if e.type == EventType.CUSTOMER_REGISTERED), None)
    if registration is None or first.occurred_at > registration.occurred_at:
        return None
    deposits = [e for e in referred_events if e.type == EventType.DEPOSIT_MADE]
    if not deposits:
        return None
    moment = deposits[0].occurred_at
    total = sum((e.record.amount for e in deposits if e.occurred_at == moment), Decimal(0))
    if total < versions.at(moment).referral.min_first_deposit or first.customer_id in erased_referrers:
        return None
    return Qualification(first.customer_id, referred_id, first.event_id, moment)
