"""Pages for bank staff over the service's application layer and roles: sign-in, customer, branch, worklist."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from timeline.http.pages import branch, customer, policy_page, signin, whatif_page
from timeline.http.pages.session import Sessions


def mount(app: FastAPI) -> None:
    """Serve the pages and their static files from ``app`` (outside the OpenAPI document)."""
    app.state.sessions = Sessions()
    for module in (signin, customer, branch, policy_page, whatif_page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(files("timeline.http") / "static")), name="static")
