"""The JSON shapes of answers, built once for every interface: the CLI's ``--json`` and the HTTP API.

Both print what these functions return, so ``GET /v1/customers/ID/state`` and
``timeline state ID --json`` give the same object for the same arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from timeline.application.verify import Report
from timeline.domain.recorded import RecordedEvent, iso
from timeline.projections.followups import Followup
from timeline.projections.state import CustomerState


def state_json(state: CustomerState) -> dict[str, Any]:
    """``timeline state ID --json``."""
    return state.to_json()


def explanation_json(state: CustomerState) -> dict[str, Any]:
    """``timeline explain ID --json``: with since when the key-person flag is what it is."""
    profile = state.profile
    return {
        **state.explain_json(),
        "key_person_explained": {
            "key_person": profile.key_person,
            "since": iso(profile.key_person_since) if profile.key_person_since else None,
            "event_id": str(profile.key_person_event_id) if profile.key_person_event_id else None,
        },
    }


def business_order(events: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    """A customer's events as ``history`` lists them: by business time, then by log position."""
    return sorted(events, key=lambda e: (e.occurred_at, e.position))


def history_json(event: RecordedEvent) -> dict[str, Any]:
    """One event of ``timeline history ID --json``: the envelope as sent, where and when it was stored."""
    return {
        **event.envelope(),
        "recorded_at": iso(event.recorded_at),
        "position": event.position,
        "version": event.version,
    }


def open_followups(states: Iterable[CustomerState], rm: str | None = None, branch: str | None = None) -> list[Followup]:
    """The open follow-ups of these customers, of one relationship manager and/or branch if given."""
    return [
        f
        for s in states
        for f in s.followups
        if (rm is None or f.relationship_manager == rm) and (branch is None or f.branch_id == branch)
    ]


def followup_listing(items: Iterable[Followup], overdue: bool = False) -> list[Followup]:
    """What ``followups`` lists: only overdue ones if asked, by branch, manager, due date and customer."""
    chosen = [f for f in items if f.overdue] if overdue else list(items)
    chosen.sort(key=lambda f: (f.branch_id or "", f.relationship_manager or "", f.due_date, f.customer_id))
    return chosen


def followup_json(item: Followup) -> dict[str, Any]:
    """One line of ``timeline followups --json``."""
    return item.to_json()


def verify_json(report: Report) -> dict[str, Any]:
    """``timeline verify --json``."""
    return {
        "intact": report.intact,
        "customers": report.customers,
        "events": report.events,
        "pii_checked": report.pii_checked,
        "findings": [f.to_json() for f in report.findings],
        "access_findings": [f.to_json() for f in report.access_findings],
        "policy_findings": [f.to_json() for f in report.policy_findings],
    }
