"""Reading a request's query: unknown parameters refused, instants read as the CLI reads them."""

from __future__ import annotations

import datetime as dt

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from timeline.domain.errors import TimelineError
from timeline.domain.instants import parse_instant
from timeline.http.problems import Problem


async def known_parameters(request: Request) -> None:
    """Refuse a query parameter the endpoint does not take: a typo (``asof=``) must not be silently ignored.

    ``async``: it never waits, and FastAPI runs a plain function dependency in a worker thread, a hop that cost
    every request more than the check."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken = _query_names(route.dependant)
    unknown = sorted({name for name in request.query_params if name not in taken})
    if unknown:
        accepted = ", ".join(sorted(taken)) or "none"
        raise Problem(400, f"unknown query parameter {', '.join(unknown)} (this endpoint takes: {accepted})")


def instant(text: str | None, name: str, time_zone: str) -> dt.datetime | None:
    """``as_of``/``known_at``/``since``: an ISO 8601 instant with an offset, or a date (its end in the zone)."""
    if text is None:
        return None
    try:
        return parse_instant(text, time_zone, dt.datetime.now(dt.UTC))
    except TimelineError as exc:
        raise Problem(400, f"{name}: {exc}") from None


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters an endpoint and its dependencies declare."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
