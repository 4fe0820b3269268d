"""POLICY §4, Follow-ups (台账跟踪): open from scheduling to completion, overdue after the due date, listed
under the customer's relationship manager and branch as of Q.

Due dates are dates in the policy's time zone (Asia/Shanghai): a follow-up due on 2025-03-10 is overdue
from 2025-03-11T00:00:00+08:00. Every test runs against both stores (SQLite and PostgreSQL) through ``branch``.
"""

from __future__ import annotations

from tests.factories import deposit, erased, event, registered, withdrawal

REGISTERED = "2025-01-01T09:00:00+08:00"


def scheduled(followup_id: str = "F1", at: str = "2025-03-01T10:00:00+08:00", due: str = "2025-03-10") -> dict:
    data = {"followup_id": followup_id, "due_date": due, "reason": "other-bank deposit matures"}
    return event("followup.scheduled", "C1", at, data)


def completed(followup_id: str = "F1", at: str = "2025-03-09T15:00:00+08:00") -> dict:
    return event("followup.completed", "C1", at, {"followup_id": followup_id, "outcome": "called"})


def open_ids(branch, as_of: str) -> list[tuple[str, bool]]:
    return [(f.followup_id, f.overdue) for f in branch.state(as_of=as_of).followups]


def test_a_followup_is_open_from_its_scheduling_until_its_completion(branch):
    branch.accept(registered(at=REGISTERED), scheduled(), completed())
    assert open_ids(branch, "2025-03-01T09:59:59+08:00") == []
    assert open_ids(branch, "2025-03-01T10:00:00+08:00") == [("F1", False)]
    assert open_ids(branch, "2025-03-09T14:59:59+08:00") == [("F1", False)]
    assert open_ids(branch, "2025-03-09T15:00:00+08:00") == []


def test_overdue_from_the_first_instant_of_the_day_after_its_due_date_in_the_policy_zone(branch):
    branch.accept(registered(at=REGISTERED), scheduled(due="2025-03-10"))
    assert open_ids(branch, "2025-03-10T23:59:59+08:00") == [("F1", False)]
    assert open_ids(branch, "2025-03-11T00:00:00+08:00") == [("F1", True)]
    assert open_ids(branch, "2025-03-10T16:00:00Z") == [("F1", True)]  # the same instant, in UTC


def test_listed_under_the_relationship_manager_and_branch_as_of_q(branch):
    handover = event("customer.profile_updated", "C1", "2025-03-05T09:00:00+08:00", {"relationship_manager": "RM002"})
    branch.accept(registered(at=REGISTERED), scheduled(), handover)
    [before] = branch.state(as_of="2025-03-04T09:00:00+08:00").followups
    [after] = branch.state(as_of="2025-03-05T09:00:00+08:00").followups
    assert (before.relationship_manager, before.branch_id) == ("RM001", "BR001")
    assert (after.relationship_manager, after.branch_id) == ("RM002", "BR001")


def test_an_erasure_closes_the_followups_it_leaves_open(branch):
    """Silent in the policy: nothing can complete them after an erasure, so they are no longer anyone's to do."""
    branch.accept(
        registered(at=REGISTERED),
        deposit(at="2025-01-02T09:00:00+08:00", amount="100.00"),
        withdrawal(at="2025-01-03T09:00:00+08:00", amount="100.00"),
        scheduled(),
        erased(at="2025-06-01T09:00:00+08:00"),
    )
    assert open_ids(branch, "2025-05-31T09:00:00+08:00") == [("F1", True)]
    assert open_ids(branch, "2025-06-01T09:00:00+08:00") == []
