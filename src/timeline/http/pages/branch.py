"""``/branches/{id}`` and ``/worklist``: the application layer's report tables, filterable, each a CSV too.

The customers shown are the caller's in sight (``Service.states_in_sight``:
by assignment as of now, as the API judges scope); the tables are those
``timeline branch`` and ``timeline worklist`` print.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from timeline.application.branch_report import ReportTable, report_csv, report_of
from timeline.application.worklist import birth_dates, worklist_of
from timeline.domain.roles import Action, Forbidden, OutOfScope, Principal, Role, authorize
from timeline.http.pages import format as fmt
from timeline.http.pages.context import Visit, visit
from timeline.http.pages.errors import PageRoute
from timeline.http.pages.render import page
from timeline.http.params import instant
from timeline.http.problems import Problem

router = APIRouter(include_in_schema=False, route_class=PageRoute)

AsOf = Annotated[str | None, Query()]
Rm = Annotated[str | None, Query()]


def _as_of(v: Visit, text: str | None) -> dt.datetime:
    policy = v.svc.engine.policy
    return instant(fmt.picked(text, policy.zone), "as_of", policy.time_zone) or dt.datetime.now(dt.UTC)


def _shown(as_of: dt.datetime, zone: ZoneInfo) -> dict[str, str]:
    """The as-of line and the picker's value and label."""
    return {
        "as_of_shown": fmt.instant(as_of, zone),
        "as_of_picker": fmt.picker(as_of, zone),
        "offset": fmt.offset(as_of, zone),
    }


def _branch_tables(v: Visit, branch: str, rm: str | None, as_of: dt.datetime) -> tuple[ReportTable, ...]:
    who = v.signed_in()
    authorize(who, Action.CUSTOMERS_LIST)
    if who.role is Role.RM:
        raise Forbidden("a relationship manager's page is the worklist (/worklist)")
    if who.role is Role.BRANCH_HEAD and who.branch != branch:
        raise OutOfScope(f"no such branch: {branch}")
    states = v.svc.states_in_sight(who, as_of)
    return report_of(states, v.svc.engine.policy, branch, as_of, rm or None).tables


def branch_view(v: Visit, branch: str, rm: str | None, as_of_text: str | None) -> HTMLResponse:
    as_of = _as_of(v, as_of_text)
    tables = _branch_tables(v, branch, rm, as_of)
    zone = v.svc.engine.policy.zone
    query = urlencode([(k, val) for k, val in (("rm", rm), ("as_of", fmt.picked(as_of_text, zone))) if val])
    return page(
        v.request,
        "report.html",
        v.session,
        v.who,
        heading=f"Branch {branch}",
        action=f"/branches/{branch}",
        csv_base=f"/branches/{branch}/tables",
        whatif_href=f"/branches/{branch}/whatif",
        query=query,
        tables=tables,
        rm=rm or "",
        show_rm=True,
        as_of_text=as_of_text or "",
        **_shown(as_of, zone),
    )


@router.get("/branches/{branch}", response_class=HTMLResponse)
def branch_page(branch: str, v: Annotated[Visit, Depends(visit)], rm: Rm = None, as_of: AsOf = None) -> HTMLResponse:
    return branch_view(v, branch, rm or None, as_of or None)


@router.get("/branches/{branch}/tables/{name}.csv")
def branch_csv(
    branch: str, name: str, v: Annotated[Visit, Depends(visit)], rm: Rm = None, as_of: AsOf = None
) -> Response:
    tables = _branch_tables(v, branch, rm or None, _as_of(v, as_of))
    return _csv(tables, name, f"{branch}-{name}.csv")


def _worklist_tables(v: Visit, rm: str | None, as_of: dt.datetime) -> tuple[str, tuple[ReportTable, ...]]:
    who: Principal = v.signed_in()
    authorize(who, Action.FOLLOWUPS)
    whose = who.rm if who.role is Role.RM else rm
    if not whose:
        raise Problem(400, "whose worklist: give rm")
    mine = [s for s in v.svc.states_in_sight(who, as_of) if s.assignment.relationship_manager == whose]
    with v.svc.reading:
        births = birth_dates(v.svc.reader, v.svc.engine.keyring(), [s.customer_id for s in mine if not s.erased])
    return whose, worklist_of(mine, births, v.svc.engine.policy, whose, as_of).tables


@router.get("/worklist", response_class=HTMLResponse)
def worklist_page(v: Annotated[Visit, Depends(visit)], as_of: AsOf = None) -> HTMLResponse:
    moment, zone = _as_of(v, as_of), v.svc.engine.policy.zone
    whose, tables = _worklist_tables(v, None, moment)
    return page(
        v.request,
        "report.html",
        v.session,
        v.who,
        heading=f"Worklist of {whose}",
        action="/worklist",
        csv_base="/worklist/tables",
        query=urlencode({"as_of": fmt.picked(as_of, zone)}) if as_of else "",
        tables=tables,
        rm="",
        show_rm=False,
        as_of_text=as_of or "",
        **_shown(moment, zone),
    )


@router.get("/worklist/tables/{name}.csv")
def worklist_csv(name: str, v: Annotated[Visit, Depends(visit)], as_of: AsOf = None) -> Response:
    whose, tables = _worklist_tables(v, None, _as_of(v, as_of))
    return _csv(tables, name, f"worklist-{whose}-{name}.csv")


def _csv(tables: tuple[ReportTable, ...], name: str, filename: str) -> Response:
    chosen = next((t for t in tables if t.name == name), None)
    if chosen is None:
        raise Problem(404, f"no table {name}: one of {', '.join(t.name for t in tables)}")
    return Response(
        report_csv(chosen),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
