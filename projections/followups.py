"""Follow-ups (台账跟踪), RULES §4: open until completed, overdue after their due date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from projections.policy import Policy
from timeline.recorded import RecordedEvent


@dataclass(frozen=True, slots=True)
class Followup:
    customer_id: str
    followup_id: str
    due_date: dt.date
    reason: str
    scheduled_at: dt.datetime
    overdue: bool
    relationship_manager: str | None
    branch_id: str | None
    event_id: UUID

    def to_json(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "followup_id": self.followup_id,
            "due_date": self.due_date.isoformat(),
            "reason": self.reason,
            "scheduled_at": self.scheduled_at.isoformat().replace("+00:00", "Z"),
            "overdue": self.overdue,
            "relationship_manager": self.relationship_manager,
            "branch_id": self.branch_id,
            "event_id": str(self.event_id),
        }


@dataclass(frozen=True, slots=True)
class Assignment:
    """Whose customer it is as of a moment: registration, then profile updates."""

    branch_id: str | None
    relationship_manager: str | None


def assignment_as_of(events: Sequence[RecordedEvent]) -> Assignment:
    branch = manager = None
    for event in events:
        if event.type == "customer.registered":
            branch, manager = event.data["branch_id"], event.data["relationship_manager"]
        elif event.type == "customer.profile_updated" and event.data.get("relationship_manager"):
            manager = event.data["relationship_manager"]
    return Assignment(branch, manager)


def open_followups(events: Sequence[RecordedEvent], policy: Policy, as_of: dt.datetime) -> list[Followup]:
    """Open follow-ups at ``as_of`` from the events counted up to then; overdue if due before that date.

    An erasure closes every follow-up it leaves open: nothing can complete them afterwards (RULES §2).
    """
    if any(e.type == "customer.erased" for e in events):
        return []
    today = as_of.astimezone(policy.zone).date()
    who = assignment_as_of(events)
    done = {e.data["followup_id"] for e in events if e.type == "followup.completed"}
    return [
        Followup(
            customer_id=e.customer_id,
            followup_id=e.data["followup_id"],
            due_date=(due := dt.date.fromisoformat(e.data["due_date"])),
            reason=e.data["reason"],
            scheduled_at=e.occurred_at,
            overdue=due < today,
            relationship_manager=who.relationship_manager,
            branch_id=who.branch_id,
            event_id=e.event_id,
        )
        for e in events
        if e.type == "followup.scheduled" and e.data["followup_id"] not in done
    ]
