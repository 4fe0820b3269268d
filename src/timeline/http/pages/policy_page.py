"""``/policy``: docs/POLICY.md rendered, its section anchors the ones explanations link to (rule_docs)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt

from timeline.http.pages.context import Visit, visit
from timeline.http.pages.errors import PageRoute
from timeline.http.pages.render import page

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@cache
def policy_html() -> str:
    """The document as HTML. Its inline ``<a id>`` anchors are kept (html on): the file is the project's own."""
    text = (files("timeline.http.pages") / "POLICY.md").read_text(encoding="utf-8")
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


@router.get("/policy", response_class=HTMLResponse)
def policy(v: Annotated[Visit, Depends(visit)]) -> HTMLResponse:
    return page(v.request, "policy.html", v.session, v.who, body=policy_html())
