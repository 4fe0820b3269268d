"""Each request timed by route template and logged as one access line: a plain ASGI middleware.

Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs every
request through an extra task and memory streams, a cost paid on every call of the hottest routes.
The route is its template (never the path: a path holds a customer id).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from timeline.http.metrics import Metrics

access_log = logging.getLogger("timeline.http.access")

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""An ``X-Request-Id`` the caller sent is kept if it looks like one; otherwise the service makes one."""


class Observed:
    """Times every HTTP request into the metrics and logs it (request id, method, route, status, duration)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(status)).observe(took)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1f ms",
                    scope["method"],
                    route,
                    status,
                    took * 1000,
                    extra=_fields(request_id, scope["method"], route, status, took),
                )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def _fields(request_id: str, method: str, route: str, status: int, took: float) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(took * 1000, 3),
    }
