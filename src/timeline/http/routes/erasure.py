"""``POST /v1/customers/{id}/erasure``: compliance asks for a customer's erasure (RULES §7), appended as an event."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from timeline.application.jsonl import read_lines
from timeline.domain.recorded import iso
from timeline.domain.roles import Action, Principal
from timeline.http.auth import Svc, may
from timeline.http.problems import Problem, documented
from timeline.http.service import Service

router = APIRouter(prefix="/v1/customers", tags=["customers"])

SOURCE = "timeline-http"
"""The ``source`` of the events the service itself writes on a caller's request."""


class ErasureRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200, description="Why the customer's personal data is erased")


@router.post(
    "/{customer_id}/erasure",
    summary="Erase the customer's personal data: a customer.erased event, its actor the caller",
    responses={422: documented("The engine refused the erasure (why in detail)")},
)
async def erase(
    customer_id: str, request: ErasureRequest, svc: Svc, who: Annotated[Principal, may(Action.ERASE)]
) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "customer.erased",
        "customer_id": customer_id,
        "occurred_at": iso(dt.datetime.now(dt.UTC)),
        "source": SOURCE,
        "actor": who.name,
        "data": {"reason": request.reason},
    }
    [outcome] = await run_in_threadpool(_append, svc, event)
    if outcome.status == "rejected":
        raise Problem(422, f"erasure refused: {outcome.error}")
    return outcome.to_json()


def _append(svc: Service, event: dict[str, Any]) -> list[Any]:
    with svc.writing:
        outcomes = list(svc.engine.ingestor().ingest(read_lines([json.dumps(event, ensure_ascii=False)])))
    svc.metrics.count(outcomes)
    return outcomes
