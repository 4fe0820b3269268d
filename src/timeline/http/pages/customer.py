"""``/customers/{id}``: the timeline, the charts, the state box and the time machine of one customer.

Scope and roles are the API's (``timeline.http.routes.customers``): the same
checks, the same 404 for a customer out of sight, the same 403 for a past
``known_at`` asked by anyone but compliance, the same access records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from timeline.domain.roles import Action, Role, allows
from timeline.domain.rule_docs import link
from timeline.http.pages import format as fmt
from timeline.http.pages.charts_kept import page_charts
from timeline.http.pages.context import Visit, visit
from timeline.http.pages.errors import PageRoute
from timeline.http.pages.paging import page_of
from timeline.http.pages.render import page
from timeline.http.pages.timeline_page import links, timeline_page
from timeline.http.pages.timeline_view import month_labels
from timeline.http.routes.customers import scoped_state
from timeline.projections.state import CustomerState

router = APIRouter(include_in_schema=False, route_class=PageRoute)

LEDGER_PAGE = 100
"""The most lines of the points ledger on one page (of the timeline: ``paging.PAGE_SIZE``)."""


COMPARED = ("tier", "lifecycle", "points", "aum", "branch_id", "relationship_manager", "next_change_at", "erased")


@dataclass(frozen=True, slots=True)
class Difference:
    field: str
    then: str
    now: str


def _differences(asked: CustomerState, today: CustomerState, zone: ZoneInfo) -> tuple[Difference, ...]:
    """The figures of the state box that differ as known today (``state --json``'s fields), as the box shows them."""
    then, now = asked.to_json(), today.to_json()
    return tuple(
        Difference(f, _shown(f, then[f], zone), _shown(f, now[f], zone)) for f in COMPARED if then[f] != now[f]
    )


def _shown(field: str, value: object, zone: ZoneInfo) -> str:
    if value is None:
        return "none"
    if field == "aum":
        return fmt.money(str(value))
    if field == "points":
        return fmt.count(int(str(value)))
    if field == "next_change_at":
        return fmt.instant(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")), zone)
    return str(value)


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer_page(
    customer_id: str,
    v: Annotated[Visit, Depends(visit)],
    as_of: Annotated[str | None, Query()] = None,
    known_at: Annotated[str | None, Query()] = None,
    events: Annotated[str | None, Query()] = None,
    ledger: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    who, svc = v.signed_in(), v.svc
    policy, zone = svc.engine.policy, svc.engine.policy.zone
    as_of, known_at = fmt.picked(as_of, zone), fmt.picked(known_at, zone)
    state = scoped_state(svc, who, customer_id, Action.EXPLAIN, as_of, known_at)
    with svc.reading:
        sealed = list(svc.reader.history(customer_id))  # the cached list grows under other requests
        today = svc.reader.state(customer_id, state.as_of) if known_at else state
    differences = _differences(state, today, zone) if known_at else ()
    later = [e for e in sealed if e.recorded_at > state.known_at]
    svc.trail.append(who, customer_id, Action.EXPLAIN, "customer page")
    asked = {"as_of": as_of, "known_at": known_at, "events": events, "ledger": ledger}
    timeline = None
    if allows(who.role, Action.HISTORY_PII):
        timeline = timeline_page(svc, customer_id, sealed, state, events, asked)
        svc.trail.append(who, customer_id, Action.HISTORY_PII, "customer page")
    lines = state.points.ledger[::-1]
    ledger_page = page_of(month_labels((line.at for line in lines), zone), ledger, "ledger", LEDGER_PAGE)
    aum_chart, points_chart = page_charts(state, sealed, policy)
    return page(
        v.request,
        "customer.html",
        v.session,
        who,
        state=state,
        zone=zone,
        policy=policy,
        offset=fmt.offset(state.as_of, zone),
        currency=policy.currency,
        fmt=fmt,
        link=link,
        timeline=timeline,
        ledger=lines[ledger_page.start : ledger_page.stop],
        ledger_page=ledger_page,
        ledger_links=links(customer_id, asked, "ledger", ledger_page, len(lines)),
        aum_chart=aum_chart,
        points_chart=points_chart,
        differences=differences,
        later_corrections=sum(1 for e in later if e.type == "correction.recorded"),
        later_events=len(later),
        as_of_text=as_of or "",
        known_at_text=known_at or "",
        may_known_at=allows(who.role, Action.KNOWN_AT_PAST),
        is_rm=who.role is Role.RM,
    )
