"""Input events of the branch report's and the worklist's scenarios (beyond tests/factories.py)."""

from __future__ import annotations

from typing import Any

from tests.factories import event


def profile(customer_id: str, at: str, **data: Any) -> dict[str, Any]:
    return event("customer.profile_updated", customer_id, at, data)


def survey(customer_id: str, at: str, score: int) -> dict[str, Any]:
    return event("survey.completed", customer_id, at, {"score": score})


def filed(customer_id: str, at: str, complaint_id: str, category: str = "手续费") -> dict[str, Any]:
    data = {"complaint_id": complaint_id, "category": category, "severity": "low", "description": "a fee"}
    return event("complaint.filed", customer_id, at, data)


def resolved(customer_id: str, at: str, complaint_id: str, satisfied: bool = True) -> dict[str, Any]:
    data = {"complaint_id": complaint_id, "resolution": "refunded", "satisfied": satisfied}
    return event("complaint.resolved", customer_id, at, data)


def referral(customer_id: str, at: str, referred: str) -> dict[str, Any]:
    return event("referral.made", customer_id, at, {"referred_customer_id": referred})


def greeting(customer_id: str, at: str, occasion: str = "festival") -> dict[str, Any]:
    return event("greeting.sent", customer_id, at, {"occasion": occasion, "channel": "wechat"})


def scheduled(customer_id: str, at: str, followup_id: str, due: str) -> dict[str, Any]:
    data = {"followup_id": followup_id, "due_date": due, "reason": f"call about {followup_id}"}
    return event("followup.scheduled", customer_id, at, data)
