"""``POST /v1/whatif``: what a candidate policy would change, as ``timeline whatif --json`` (writes nothing).

For compliance (every customer) and for a branch head, whose answer covers
their own branch alone: naming another branch is refused (403), not answered
with nobody. A candidate that breaks the policy schema or is inconsistent is
a 422 whose detail is the one line ``whatif`` prints: the field and the reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from timeline.application.whatif import Question, Report, effective_from, what_if
from timeline.domain.errors import TimelineError
from timeline.domain.policy import Policy, parse_policy
from timeline.domain.policy_errors import InvalidPolicy
from timeline.domain.roles import Action, Forbidden, Principal, Role, authorize
from timeline.http.auth import Svc, may
from timeline.http.params import instant
from timeline.http.problems import Problem, documented
from timeline.http.service import Service

router = APIRouter(prefix="/v1", tags=["policy"])


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    policy: dict[str, Any] = Field(description="The candidate policy, as schemas/policy.schema.json describes it")
    from_: str | None = Field(
        None,
        alias="from",
        description="Business time the candidate is in force from (an instant with offset, or a date: its start); "
        "default: the beginning",
    )
    as_of: str | None = Field(None, description="Business time of the answers (default: now)")
    known_at: str | None = Field(None, description="System time: only events recorded by then (past: compliance)")
    branch: str | None = Field(None, description="Only this branch's customers (a branch head: their own, the default)")


@router.post(
    "/whatif",
    summary="Every customer under the current policy and under a candidate: who differs, and the summary",
    responses={422: documented("The candidate policy breaks its schema or is inconsistent (the field in detail)")},
)
async def whatif(request: WhatIfRequest, svc: Svc, who: Annotated[Principal, may(Action.WHATIF)]) -> dict[str, Any]:
    zone = svc.engine.policy.time_zone
    now = dt.datetime.now(dt.UTC)
    q, k = instant(request.as_of, "as_of", zone), instant(request.known_at, "known_at", zone)
    authorize(who, Action.WHATIF, known_at_past=k is not None and k < now)
    try:
        candidate = parse_policy(request.policy)
    except InvalidPolicy as exc:
        raise Problem(422, str(exc)) from None
    question = Question(candidate, q or now, k or now, _from(request.from_, zone), _branch(who, request.branch))
    try:
        report = await run_in_threadpool(_run, svc, svc.engine.policy, question)
    except InvalidPolicy as exc:  # the candidate cannot follow the versions it would be in force after
        raise Problem(422, str(exc)) from None
    return report.to_json()


def _from(text: str | None, time_zone: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return effective_from(text, time_zone)
    except TimelineError as exc:
        raise Problem(400, f"from: {exc}") from None


def _branch(who: Principal, branch: str | None) -> str | None:
    """The branch asked about: a branch head's own (another is refused), anyone's for compliance."""
    if who.role is not Role.BRANCH_HEAD:
        return branch
    if branch is not None and branch != who.branch:
        raise Forbidden(f"a branch_head may ask what-if only about their branch {who.branch}, not {branch}")
    return who.branch


def _run(svc: Service, current: Policy, question: Question) -> Report:
    with svc.reading:
        return what_if(svc.engine.store, current, question)
