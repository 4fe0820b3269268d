"""A small branch for the pages' tests: two branches, three RMs, an at-risk customer with a late correction.

System times are given explicitly (each phase is ingested with its own
clock), so "as known at 2026-01-15" is before the correction of C1's
deposit recorded on 2026-02-01, and every business time is in the past.
"""

from __future__ import annotations

import datetime as dt

from tests.factories import correction, deposit, erased, event, registered, visit
from timeline.engine import open_engine

CORRECTION_RECORDED = "2026-02-01"
BEFORE_CORRECTION = "2026-01-15"
BETWEEN_RECORDINGS = f"{CORRECTION_RECORDED}T12:00:30"
"""A wall time of the policy's zone on the correction's day: after its recording (10:00), before the
recording of C2's late visit (16:00)."""
VOIDED_DEPOSIT = "3c7d8e1a-0000-4000-8000-00000000c0de"

CUSTOMERS = {
    "C1": ("王小明", "BR001", "RM001"),
    "C2": ("李华", "BR001", "RM002"),
    "C3": ("张伟", "BR001", "RM001"),
    "C4": ("陈静", "BR002", "RM003"),
    "C5": ("刘洋", "BR001", "RM001"),
}


def _at(day: str, time: str = "10:00:00") -> str:
    return f"{day}T{time}+08:00"


def _first_phase() -> list[dict]:
    events = []
    for i, (customer, (name, branch, rm)) in enumerate(CUSTOMERS.items()):
        events.append(
            registered(customer, at=_at(f"2024-0{i + 1}-05"), name=name, branch_id=branch, relationship_manager=rm)
        )
    events += [
        deposit("C1", at=_at("2024-01-10"), amount="80000.00"),
        deposit("C1", at=_at("2025-03-10"), amount="600000.00", account_id="T1", product="time", term_months=12),
        visit("C1", at=_at("2025-04-02"), channel="home_visit", purpose="portfolio review"),
        event("greeting.sent", "C1", _at("2025-05-02"), {"occasion": "birthday", "channel": "wechat", "gift": "茶叶"}),
        event("survey.completed", "C1", _at("2025-06-20"), {"score": 4}),
        event("customer.profile_updated", "C1", _at("2025-07-01"), {"key_person": True}),
        event("referral.made", "C1", _at("2025-08-01"), {"referred_customer_id": "C3"}),
        deposit("C3", at=_at("2025-08-15"), amount="20000.00"),
        event("points.redeemed", "C1", _at("2025-09-01"), {"points": 300, "reward": "电影票"}),
        event(
            "deposit.made",
            "C1",
            _at("2025-11-01"),
            {"account_id": "A1", "amount": "100000.00", "product": "demand"},
            event_id=VOIDED_DEPOSIT,
        ),
        deposit("C2", at=_at("2024-02-10"), amount="1200000.00"),
        visit("C2", at=_at("2025-10-10")),
        deposit("C4", at=_at("2024-04-10"), amount="30000.00"),
        visit("C5", at=_at("2024-05-10"), channel="phone", purpose="welcome call"),
    ]
    return events


def _second_phase() -> list[dict]:
    return [
        correction(VOIDED_DEPOSIT, "C1", at=_at("2025-11-01", "12:00:00")),
        visit("C2", at=_at("2025-12-10"), channel="phone", purpose="rate review"),
    ]


def _late_that_day() -> list[dict]:
    return [visit("C2", at=_at("2025-12-20"), channel="branch", purpose="wealth plan")]


def _third_phase() -> list[dict]:
    return [
        event(
            "complaint.filed",
            "C1",
            _at("2026-09-01"),
            {"complaint_id": "K1", "category": "fees", "severity": "high", "description": "annual fee charged twice"},
        ),
        event(
            "followup.scheduled",
            "C1",
            _at("2026-09-02"),
            {"followup_id": "F1", "due_date": "2026-09-30", "reason": "call about the fee complaint"},
        ),
        event("survey.completed", "C2", _at("2026-08-20"), {"score": 5}),
        erased("C5", at=_at("2026-10-01")),
    ]


def build(url: str) -> None:
    """Create the store at ``url`` with the branch above, each phase recorded at its own system time."""
    engine = open_engine(url, create=True)
    try:
        for phase, recorded in (
            (_first_phase(), "2025-12-01T02:00:00+00:00"),
            (_second_phase(), f"{CORRECTION_RECORDED}T02:00:00+00:00"),
            (_late_that_day(), f"{CORRECTION_RECORDED}T08:00:00+00:00"),
            (_third_phase(), "2026-10-15T02:00:00+00:00"),
        ):
            when = dt.datetime.fromisoformat(recorded)
            outcomes = list(engine.ingestor(clock=lambda when=when: when).ingest(list(enumerate(phase, 1))))
            bad = [(o.line, o.error) for o in outcomes if o.status != "accepted"]
            assert not bad, bad
    finally:
        engine.close()
