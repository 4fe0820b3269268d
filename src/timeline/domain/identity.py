"""Identity rules of POLICY §2: who a stream belongs to and when it may grow.

These need only the customer's own stream: a registration comes first and
once, nothing precedes it in business time, nothing follows an erasure but
corrections, and nobody refers themself. State-dependent rules (balances,
complaints, points, corrections) live in ``timeline.projections.acceptance``.
"""

from __future__ import annotations

from timeline.domain.errors import RejectedEvent
from timeline.domain.recorded import RecordedEvent, iso


def check_identity(registration: RecordedEvent | None, erased: bool, candidate: RecordedEvent) -> None:
    """Raise RejectedEvent if ``candidate`` may not follow a stream that starts with ``registration``.

    ``registration`` is the stream's first event if it is a registration;
    ``erased``: the stream's last event other than a correction is an erasure
    (only corrections may follow one). The guard keeps both as events arrive.
    """
    if candidate.type == "customer.registered":
        if registration is not None:
            raise RejectedEvent(f"customer {candidate.customer_id} is already registered")
        return
    if registration is None:
        raise RejectedEvent(f"customer {candidate.customer_id} is not registered")
    if erased and candidate.type != "correction.recorded":
        raise RejectedEvent(f"customer {candidate.customer_id} is erased; only corrections are accepted")
    if candidate.occurred_at < registration.occurred_at:
        raise RejectedEvent(
            f"occurred_at {iso(candidate.occurred_at)} is before the customer's registration "
            f"at {iso(registration.occurred_at)}"
        )
    if candidate.type == "referral.made" and candidate.data["referred_customer_id"] == candidate.customer_id:
        raise RejectedEvent("a customer cannot refer themself")
