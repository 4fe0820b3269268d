"""The Jinja2 templates (autoescaped) and the page every template extends: who is signed in, the CSRF token."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from timeline.domain.roles import Principal
from timeline.http.pages import format as fmt
from timeline.http.pages.csrf import PRE_SESSION_COOKIE, form_token
from timeline.http.pages.session import Session, set_cookie

TEMPLATES = files("timeline.http") / "templates"

environment = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(money=fmt.money, count=fmt.count, policy=fmt.policy_href)
environment.tests["numeric"] = fmt.numeric


def page(
    request: Request,
    template: str,
    session: Session | None,
    who: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page; before sign-in it sets the pre-session CSRF cookie its forms repeat."""
    csrf, new = form_token(request, session)
    html = environment.get_template(template).render(request=request, who=who, csrf=csrf, **context)
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    if new:
        set_cookie(response, request, PRE_SESSION_COOKIE, csrf)
    return response
