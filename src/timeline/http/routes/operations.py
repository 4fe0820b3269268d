"""Follow-ups, verification, the access log, status, liveness, readiness and metrics."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from timeline.application.verify import verify as run_verify
from timeline.application.views import followup_json, followup_listing, open_followups, verify_json
from timeline.domain.recorded import iso
from timeline.domain.roles import Action, Principal, authorize
from timeline.engine import verify_wrapper
from timeline.http.auth import Svc, may, principal_of
from timeline.http.params import instant
from timeline.http.problems import Problem, documented

router = APIRouter(tags=["operations"])


@router.get("/v1/followups", summary="Open follow-ups of the caller's customers, as `followups --json` (an array)")
def followups(
    svc: Svc,
    who: Annotated[Principal, may(Action.FOLLOWUPS)],
    rm: Annotated[str | None, Query(description="Only this relationship manager's")] = None,
    branch: Annotated[str | None, Query(description="Only this branch's")] = None,
    overdue: Annotated[bool, Query(description="Only overdue ones")] = False,
    as_of: Annotated[str | None, Query(description="Business time (default now)")] = None,
) -> list[dict[str, Any]]:
    mine = svc.states_in_sight(who, instant(as_of, "as_of", svc.engine.policy.time_zone))
    return [followup_json(f) for f in followup_listing(open_followups(mine, rm, branch), overdue)]


@router.get("/v1/verify", summary="Recompute every hash chain and check every key, as `verify --json`")
def verify(
    svc: Svc,
    who: Annotated[Principal, may(Action.VERIFY)],
    customer: Annotated[str | None, Query(description="Verify one customer only")] = None,
) -> dict[str, Any]:
    store = svc.engine.store
    report = run_verify(store, customer, verify_wrapper(store, svc.options.kek), access=svc.access)
    return verify_json(report)


@router.get("/v1/access-log", summary="Who looked at which customer, what, when and why (oldest first, paged)")
def access_log(
    svc: Svc,
    who: Annotated[Principal, may(Action.ACCESS_LOG)],
    customer: Annotated[str | None, Query(description="Only accesses to this customer")] = None,
    principal_name: Annotated[str | None, Query(alias="principal", description="Only this principal's")] = None,
    since: Annotated[str | None, Query(description="Only from this instant on")] = None,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="The page after this record (the last page's next_after)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Records per page")] = 1000,
) -> dict[str, Any]:
    start = instant(since, "since", svc.engine.policy.time_zone)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if start else None
    records = svc.access.read_access(after, limit + 1, customer, principal_name, stamp)
    page = records[:limit]
    return {"records": [r.to_json() for r in page], "next_after": page[-1].seq if len(records) > limit else None}


@router.get("/v1/status", summary="The pipeline as `timeline status --json`; the broker is waited for at most 3.5 s")
def status(svc: Svc, who: Annotated[Principal, may(Action.STATUS)]) -> dict[str, Any]:
    return svc.pipeline_status()


@router.get("/healthz", summary="Alive")
def healthz() -> dict[str, Any]:
    return {"alive": True, "at": iso(dt.datetime.now(dt.UTC))}


@router.get(
    "/readyz",
    summary="Ready: the store answers and its key-encryption key checks",
    responses={503: documented("Not ready, saying why")},
)
def readyz(svc: Svc) -> dict[str, Any]:
    try:
        head = svc.engine.store.head_position()
        svc.engine.wrapper.check(writing=False)
    except Exception as exc:  # noqa: BLE001 - not ready, saying why
        raise Problem(503, f"not ready: {exc}") from None
    return {"ready": True, "head_position": head}


def _metrics_caller(request: Request, svc: Svc) -> None:
    """With ``--metrics-need-ops``, only a principal of role ``ops`` reads the metrics."""
    if svc.options.metrics_need_ops:
        authorize(principal_of(request, svc), Action.METRICS)


@router.get("/metrics", summary="Prometheus metrics (text format); no customer data", response_class=Response)
def metrics(svc: Svc, _: Annotated[None, Depends(_metrics_caller)]) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
