"""Identity rules of RULES §2: who a stream belongs to and when it may grow.

These need only the customer's own stream: a registration comes first and
once, nothing precedes it in business time, nothing follows an erasure but
corrections, and nobody refers themself. State-dependent rules (balances,
complaints, points, corrections) live in ``projections.acceptance``.
"""

from __future__ import annotations

from collections.abc import Sequence

from timeline.errors import RejectedEvent
from timeline.recorded import RecordedEvent, iso


def check_identity(history: Sequence[RecordedEvent], candidate: RecordedEvent) -> None:
    registration = history[0] if history and history[0].type == "customer.registered" else None
    if candidate.type == "customer.registered":
        if registration is not None:
            raise RejectedEvent(f"customer {candidate.customer_id} is already registered")
        return
    if registration is None:
        raise RejectedEvent(f"customer {candidate.customer_id} is not registered")
    if _erased(history) and candidate.type != "correction.recorded":
        raise RejectedEvent(f"customer {candidate.customer_id} is erased; only corrections are accepted")
    if candidate.occurred_at < registration.occurred_at:
        raise RejectedEvent(
            f"occurred_at {iso(candidate.occurred_at)} is before the customer's registration "
            f"at {iso(registration.occurred_at)}"
        )
    if candidate.type == "referral.made" and candidate.data["referred_customer_id"] == candidate.customer_id:
        raise RejectedEvent("a customer cannot refer themself")


def _erased(history: Sequence[RecordedEvent]) -> bool:
    """Only corrections may follow an erasure, so it is the last event of another type."""
    for event in reversed(history):
        if event.type != "correction.recorded":
            return event.type == "customer.erased"
    return False
