"""``POST /v1/events``: events in, through the same ingestion as ``timeline ingest``."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from timeline.application.batch import Outcome, Summary
from timeline.application.jsonl import read_lines
from timeline.domain.roles import Action, Principal
from timeline.http.auth import Svc, may
from timeline.http.problems import Problem, documented
from timeline.http.service import Service

router = APIRouter(prefix="/v1", tags=["events"])

NDJSON = "application/x-ndjson"
JSON = "application/json"
REFUSED = "not stored: atomic input had rejections"
"""The error of a valid event that an atomic input's rejections kept out."""

_EVENT_BODY = {
    "required": True,
    "content": {
        NDJSON: {"schema": {"type": "string", "description": "JSON Lines: one event per line"}},
        JSON: {"schema": {"type": "array", "items": {"type": "object"}, "description": "An array of events"}},
    },
}


async def _body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _lines(kind: str, body: bytes) -> Any:
    """The body as numbered input lines, as ``timeline ingest`` reads a file."""
    if kind == NDJSON:
        return read_lines(io.BytesIO(body))
    try:
        items = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem(400, f"body is not JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, "body is not JSON: nested too deeply") from None
    if not isinstance(items, list):
        raise Problem(400, f"a {JSON} body must be an array of events, not a JSON {type(items).__name__}")
    return read_lines(json.dumps(item, ensure_ascii=False) for item in items)


def _media_type(request: Request) -> str:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in (NDJSON, JSON):
        shown = kind or "none"
        raise Problem(415, f"content type {shown} is not accepted: send {NDJSON} (JSON Lines) or {JSON} (an array)")
    return kind


@router.post(
    "/events",
    summary="Ingest events (JSON Lines or a JSON array): each event's outcome and the summary",
    openapi_extra={"requestBody": _EVENT_BODY},
    response_model=dict[str, Any],
    responses={
        413: documented("Body over the limit"),
        415: documented("Neither JSON Lines nor JSON"),
        422: documented("atomic=true and some event was rejected: none stored"),
    },
)
async def ingest(
    request: Request,
    svc: Svc,
    who: Annotated[Principal, may(Action.INGEST)],
    atomic: Annotated[bool, Query(description="Store all events of the body or none")] = False,
) -> Response:
    # the body is read here; parsing, ingesting and the answer's JSON run in the threadpool, off the event loop
    kind = _media_type(request)
    body = await _body(request, svc.options.max_body)
    return await run_in_threadpool(_answer, svc, kind, body, atomic)


def _answer(svc: Service, kind: str, body: bytes, atomic: bool) -> Response:
    outcomes, summary = _ingest(svc, _lines(kind, body), atomic)
    result = {"outcomes": [o.to_json() for o in outcomes], "summary": summary.to_json()}
    if atomic and summary.rejected:
        lines = [str(o.line) for o in outcomes if o.status == "rejected" and not (o.error or "").startswith(REFUSED)]
        raise Problem(422, f"none was stored: atomic input had rejections (line {', '.join(lines)})", **result)
    return Response(orjson.dumps(result), media_type=JSON)


def _ingest(svc: Service, lines: Iterator[Any], atomic: bool) -> tuple[list[Outcome], Summary]:
    started = time.perf_counter()
    with svc.writing:
        outcomes = list(svc.ingestor.ingest(lines, atomic=atomic))
        svc.ingestor.engine_events.clear()  # qualifications are the store's to report, not this body's
    svc.metrics.ingest_seconds.observe(time.perf_counter() - started)
    svc.metrics.count(outcomes)
    summary = Summary()
    for outcome in outcomes:
        summary.add(outcome)
    return outcomes, summary
