"""``/branches/{id}/whatif``: what a candidate policy would change in a branch, as ``POST /v1/whatif`` answers.

For a branch head (their own branch) and compliance. The candidate is pasted
as JSON into a POSTed form (CSRF-checked, at most the form's size); ``from``
and ``as of`` are optional. A refused candidate shows its one line, the
field and the reason, as ``timeline whatif`` prints it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from timeline.application.whatif import Question, Report, effective_from, what_if
from timeline.domain.errors import TimelineError
from timeline.domain.policy import parse_policy
from timeline.domain.policy_errors import InvalidPolicy
from timeline.domain.roles import Action, OutOfScope, Role, authorize
from timeline.http.pages import format as fmt
from timeline.http.pages.context import Visit, visit
from timeline.http.pages.csrf import checked_form
from timeline.http.pages.errors import PageRoute
from timeline.http.pages.render import page
from timeline.http.params import instant
from timeline.http.problems import Problem

router = APIRouter(include_in_schema=False, route_class=PageRoute)


def _allowed(v: Visit, branch: str) -> None:
    who = v.signed_in()
    authorize(who, Action.WHATIF)
    if who.role is Role.BRANCH_HEAD and who.branch != branch:
        raise OutOfScope(f"no such branch: {branch}")


def _view(v: Visit, branch: str, form: dict[str, str], report: Report | None, error: str, status: int) -> HTMLResponse:
    zone = v.svc.engine.policy.zone
    summary = report.summary_json() if report is not None else None
    return page(
        v.request,
        "whatif.html",
        v.session,
        v.who,
        status=status,
        branch=branch,
        form=form,
        error=error,
        report=report,
        summary=summary,
        policy=v.svc.engine.policy,
        as_of_shown=fmt.instant(report.question.as_of, zone) if report is not None else "",
    )


@router.get("/branches/{branch}/whatif", response_class=HTMLResponse)
def whatif_form(branch: str, v: Annotated[Visit, Depends(visit)]) -> HTMLResponse:
    _allowed(v, branch)
    return _view(v, branch, {}, None, "", 200)


@router.post("/branches/{branch}/whatif", response_class=HTMLResponse)
async def whatif_answer(branch: str, request: Request) -> HTMLResponse:
    v = visit(request)
    form = await checked_form(request, v.session)
    _allowed(v, branch)
    shown = {k: form.get(k, "") for k in ("policy", "from", "as_of")}
    try:
        question = _question(v, branch, shown)
        report = await run_in_threadpool(_run, v, question)
    except (InvalidPolicy, TimelineError, Problem) as exc:
        return _view(v, branch, shown, None, str(exc), 422)
    return _view(v, branch, shown, report, "", 200)


def _question(v: Visit, branch: str, form: dict[str, str]) -> Question:
    zone = v.svc.engine.policy.time_zone
    try:
        raw: Any = orjson.loads(form["policy"])
    except orjson.JSONDecodeError as exc:
        raise TimelineError(f"policy: not JSON ({exc})") from None
    candidate = parse_policy(raw)
    now = dt.datetime.now(dt.UTC)
    as_of = instant(form["as_of"] or None, "as_of", zone) or now
    start = effective_from(form["from"], zone) if form["from"] else None
    return Question(candidate, as_of, now, start, branch)


def _run(v: Visit, question: Question) -> Report:
    with v.svc.reading:
        return what_if(v.svc.engine.store, v.svc.engine.policy, question)
