"""Input events as a sender would write them, with sensible defaults."""

from __future__ import annotations

import uuid
from typing import Any


def event(event_type: str, customer_id: str, occurred_at: str, data: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "event_id": envelope.pop("event_id", str(uuid.uuid4())),
        "type": event_type,
        "customer_id": customer_id,
        "occurred_at": occurred_at,
        "data": data,
        **envelope,
    }


def registered(customer_id: str = "C1", at: str = "2025-01-01T09:00:00+08:00", **data: Any) -> dict[str, Any]:
    defaults = {
        "name": "王小明",
        "birth_date": "1980-05-02",
        "phone": "+86 138 0013 8000",
        "branch_id": "BR001",
        "relationship_manager": "RM001",
        "segment": "individual",
    }
    return event("customer.registered", customer_id, at, {**defaults, **data})


def deposit(
    customer_id: str = "C1",
    at: str = "2025-01-02T09:00:00+08:00",
    amount: str = "1000.00",
    account_id: str = "A1",
    **data: Any,
) -> dict[str, Any]:
    body = {"account_id": account_id, "amount": amount, "product": "demand", **data}
    return event("deposit.made", customer_id, at, body)


def withdrawal(
    customer_id: str = "C1", at: str = "2025-01-03T09:00:00+08:00", amount: str = "100.00", account_id: str = "A1"
) -> dict[str, Any]:
    return event("withdrawal.made", customer_id, at, {"account_id": account_id, "amount": amount})


def visit(customer_id: str = "C1", at: str = "2025-01-03T09:00:00+08:00", **data: Any) -> dict[str, Any]:
    return event("visit.recorded", customer_id, at, {"channel": "branch", "purpose": "review", **data})


def erased(customer_id: str = "C1", at: str = "2025-06-01T09:00:00+08:00") -> dict[str, Any]:
    return event("customer.erased", customer_id, at, {"reason": "customer request"})


def correction(target_id: str, customer_id: str = "C1", at: str = "2025-06-01T09:00:00+08:00") -> dict[str, Any]:
    return event("correction.recorded", customer_id, at, {"voids_event_id": target_id, "reason": "entered twice"})
