"""Errors as RFC 9457 problem details (``application/problem+json``), one precise ``detail`` each."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from timeline.application.access import AccessError, Unauthenticated
from timeline.domain.errors import (
    ConcurrencyConflict,
    CorruptEvent,
    NoStore,
    StoreUnavailable,
    TimelineError,
    UnknownCustomer,
)
from timeline.domain.roles import Forbidden, OutOfScope

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """An answer other than success: its status, the one line that says why, and any extension members."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


class ProblemDocument(BaseModel):
    """The body of every error response (RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


def documented(description: str) -> dict[str, Any]:
    """An OpenAPI response that is a problem document."""
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("Bad input: unknown query parameter, malformed instant, malformed body"),
    401: documented("No token, or one that names no principal (unknown, revoked, expired, forged)"),
    403: documented("The caller's role may not do this"),
    404: documented("No such customer (or one outside the caller's sight), or not registered as asked"),
}
"""The problems every ``/v1`` endpoint may answer; endpoints add their own (413, 415, 422)."""


# Order matters: the first class an error is an instance of decides its status.
_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (OutOfScope, 404),
    (UnknownCustomer, 404),
    (ConcurrencyConflict, 409),
    (NoStore, 503),
    (StoreUnavailable, 503),
    (CorruptEvent, 500),
    (AccessError, 400),
)


def status_of(exc: TimelineError) -> int:
    """The HTTP status of an engine error; any other :class:`TimelineError` is a mistake in the request (400)."""
    return next((status for kind, status in _STATUS_OF if isinstance(exc, kind)), 400)


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_TYPE, headers=problem.headers)


def validation_detail(exc: RequestValidationError) -> str:
    """Every invalid input as ``where name: why``, joined: the caller sees all their mistakes at once."""
    parts = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ())]
        place = f"{where[0]} parameter {'.'.join(where[1:])}" if len(where) > 1 else ".".join(where) or "request"
        if where and where[0] == "body":
            place = "body" + (f" at {'.'.join(where[1:])}" if len(where) > 1 else "")
        parts.append(f"{place}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(TimelineError)
    async def _engine(request: Request, exc: TimelineError) -> JSONResponse:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem_response(request, Problem(status, str(exc), headers))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, Problem(400, validation_detail(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(request, Problem(exc.status_code, detail, dict(exc.headers or {}) or None))
