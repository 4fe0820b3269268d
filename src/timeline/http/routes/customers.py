"""``/v1/customers``: one customer's state, explanation and history, and the list of customers.

A named customer is judged by scope before anything is shown: outside the
caller's sight (by its assignment as of now) it is "no such customer", as a
customer that does not exist is, so its existence is not revealed. Every
state, explanation or history shown is recorded in the access trail first.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from timeline.application.keyring import load_history
from timeline.application.views import business_order, explanation_json, history_json, state_json
from timeline.domain.errors import UnknownCustomer
from timeline.domain.roles import Action, Principal, Role, authorize
from timeline.http.answers import json_answer
from timeline.http.auth import Asker, Svc, may
from timeline.http.params import instant
from timeline.http.service import Service
from timeline.projections.state import CustomerState

router = APIRouter(prefix="/v1/customers", tags=["customers"])

AsOf = Annotated[
    str | None,
    Query(description="Business time: an ISO 8601 instant with offset, or a date (its end in the policy's zone)"),
]
KnownAt = Annotated[
    str | None, Query(description="System time: only events recorded by then count (other than now: compliance)")
]
Purpose = Annotated[str | None, Header(alias="X-Purpose", description="Why the caller looks: kept in the access trail")]


def _check_scope(who: Principal, current: CustomerState | None, action: Action) -> None:
    """404 "no such customer" unless the customer, by its assignment as of now, is within the caller's sight."""
    if who.role is Role.COMPLIANCE:
        return
    assignment = (current.assignment.branch_id, current.assignment.relationship_manager) if current else (None, None)
    authorize(who, action, assignment)


def scoped_state(
    svc: Service, who: Principal, customer_id: str, action: Action, as_of: str | None, known_at: str | None
) -> CustomerState:
    """The state asked, after the scope check; both from one read of the stream and its cached fold."""
    zone = svc.engine.policy.time_zone
    now = dt.datetime.now(dt.UTC)
    q, k = instant(as_of, "as_of", zone), instant(known_at, "known_at", zone)
    authorize(who, action, known_at_past=k is not None and k < now)
    asked = (q or now, k or now)
    with svc.reading:
        if who.role is Role.COMPLIANCE:
            return svc.reader.state(customer_id, *asked)
        try:
            answers = svc.reader.states(customer_id, (now, now), asked)
            current = next(answers)
        except UnknownCustomer:
            answers, current = None, None
        _check_scope(who, current, action)
        assert answers is not None and current is not None  # the scope check refused any other case
        return current if asked == (now, now) else next(answers)


@router.get(
    "/{customer_id}/state", summary="The customer's state, as `timeline state ID --json`", response_model=dict[str, Any]
)
def state(
    customer_id: str, asker: Asker, svc: Svc, as_of: AsOf = None, known_at: KnownAt = None, purpose: Purpose = None
) -> Response:
    who = asker.principal()
    result = scoped_state(svc, who, customer_id, Action.STATE, as_of, known_at)
    svc.trail.append(who, customer_id, Action.STATE, purpose)
    return json_answer(state_json(result))


@router.get(
    "/{customer_id}/explain",
    summary="Why: the state with its rules and events, as `explain --json`",
    response_model=dict[str, Any],
)
def explain(
    customer_id: str, asker: Asker, svc: Svc, as_of: AsOf = None, known_at: KnownAt = None, purpose: Purpose = None
) -> Response:
    who = asker.principal()
    result = scoped_state(svc, who, customer_id, Action.EXPLAIN, as_of, known_at)
    svc.trail.append(who, customer_id, Action.EXPLAIN, purpose)
    return json_answer(explanation_json(result))


def _now_state(svc: Service, customer_id: str) -> CustomerState | None:
    """The customer as of now, as known now (what scope is judged by); ``None`` if not registered now."""
    try:
        with svc.reading:
            return svc.reader.state(customer_id)
    except UnknownCustomer:
        return None


@router.get(
    "/{customer_id}/history",
    summary="The customer's events, PII opened or erased, as `history --json` (an array)",
    response_model=list[dict[str, Any]],
)
def history(customer_id: str, asker: Asker, svc: Svc, purpose: Purpose = None) -> Response:
    who = asker.principal()
    authorize(who, Action.HISTORY_PII)
    if who.role is not Role.COMPLIANCE:
        _check_scope(who, _now_state(svc, customer_id), Action.HISTORY_PII)
    events = business_order(load_history(svc.engine.store, svc.engine.keyring(), customer_id))
    if not events:
        raise UnknownCustomer(f"unknown customer {customer_id}: no events stored")
    svc.trail.append(who, customer_id, Action.HISTORY_PII, purpose)
    return json_answer([history_json(e) for e in events])


@router.get("", summary="The customers in the caller's sight, by customer id, a page at a time")
def customers(
    svc: Svc,
    who: Annotated[Principal, may(Action.CUSTOMERS_LIST)],
    tier: Annotated[str | None, Query(description="Only this tier")] = None,
    lifecycle: Annotated[str | None, Query(description="Only this lifecycle stage")] = None,
    branch: Annotated[str | None, Query(description="Only this branch's (assignment as of as_of)")] = None,
    rm: Annotated[str | None, Query(description="Only this relationship manager's (as of as_of)")] = None,
    as_of: AsOf = None,
    after: Annotated[
        str | None, Query(description="The page after this customer id (the last page's next_after)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Customers per page")] = 100,
) -> dict[str, Any]:
    q = instant(as_of, "as_of", svc.engine.policy.time_zone)
    states = svc.states_in_sight(who, q)
    chosen = [
        s
        for s in states
        if (after is None or s.customer_id > after)
        and (tier is None or s.tier.tier == tier)
        and (lifecycle is None or s.lifecycle.stage == lifecycle)
        and (branch is None or s.assignment.branch_id == branch)
        and (rm is None or s.assignment.relationship_manager == rm)
    ]
    page = chosen[:limit]
    return {
        "customers": [state_json(s) for s in page],
        "next_after": page[-1].customer_id if len(chosen) > limit else None,
    }
