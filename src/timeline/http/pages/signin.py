"""``/``: the sign-in form (a token from ``timeline access grant``), each role's home, and sign-out."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from timeline.application.access import Unauthenticated
from timeline.domain.roles import Role
from timeline.http.pages.branch import branch_view
from timeline.http.pages.context import Visit, sessions, visit
from timeline.http.pages.csrf import PRE_SESSION_COOKIE, checked_form
from timeline.http.pages.errors import PageRoute
from timeline.http.pages.render import page
from timeline.http.pages.session import SESSION_COOKIE, set_cookie, sign_in

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get("/", response_class=HTMLResponse)
def home(v: Annotated[Visit, Depends(visit)]) -> Response:
    """The sign-in form; signed in: a branch head's branch page, an RM's worklist, the others' start page."""
    who = v.who
    if who is None:
        return page(v.request, "signin.html", None, None)
    if who.role is Role.BRANCH_HEAD and who.branch:
        return branch_view(v, who.branch, None, None)
    if who.role is Role.RM:
        return RedirectResponse("/worklist", status_code=303)
    return page(v.request, "home.html", v.session, who)


@router.post("/sign-in")
async def sign_in_form(request: Request) -> Response:
    v = visit(request)
    form = await checked_form(request, None)
    try:
        who = sign_in(v.svc, form.get("token", ""))
    except Unauthenticated as exc:
        return page(request, "signin.html", None, None, status=401, error=str(exc))
    if who.role is Role.SOURCE:
        return page(request, "signin.html", None, None, status=403, error="role source sends events: it has no pages")
    session = sessions(request).new(form["token"].strip())
    response = RedirectResponse("/", status_code=303)
    set_cookie(response, request, SESSION_COOKIE, sessions(request).dump(session))
    response.delete_cookie(PRE_SESSION_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    v = visit(request)
    await checked_form(request, v.session)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/go")
def go(
    v: Annotated[Visit, Depends(visit)],
    customer: Annotated[str | None, Query()] = None,
    branch: Annotated[str | None, Query()] = None,
) -> Response:
    """The start page's forms: to a customer's page or a branch's."""
    v.signed_in()
    if customer:
        return RedirectResponse(f"/customers/{quote(customer.strip(), safe='')}", status_code=303)
    if branch:
        return RedirectResponse(f"/branches/{quote(branch.strip(), safe='')}", status_code=303)
    return RedirectResponse("/", status_code=303)
