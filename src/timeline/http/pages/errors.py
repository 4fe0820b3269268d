"""Errors on a page are pages: the same status and one-line reason the API gives, in HTML; no session → sign in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from timeline.domain.errors import TimelineError
from timeline.http.pages.context import SignInFirst, visit
from timeline.http.pages.render import page
from timeline.http.problems import Problem, status_of, validation_detail

TITLES = {400: "Bad request", 401: "Sign in", 403: "Not allowed", 404: "Not found", 413: "Too large"}


def error_page(request: Request, status: int, detail: str) -> Response:
    v = visit(request)
    title = TITLES.get(status, "Error")
    return page(request, "error.html", v.session, v.who, status=status, title=title, detail=detail)


class PageRoute(APIRoute):
    """A page route: what the API answers as problem+json, a page answers as an error page."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInFirst:
                return RedirectResponse("/", status_code=303)
            except Problem as exc:
                return error_page(request, exc.status, exc.detail)
            except RequestValidationError as exc:
                return error_page(request, 400, validation_detail(exc))
            except TimelineError as exc:
                return error_page(request, status_of(exc), str(exc))

        return guarded
