"""The ASGI application: the routes, problem details for every error, request metrics, the OpenAPI document."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from timeline import __version__
from timeline.http import pages, problems
from timeline.http.observe import Observed
from timeline.http.params import known_parameters
from timeline.http.problems import PROBLEM_RESPONSES, ProblemDocument
from timeline.http.routes import customers, erasure, events, operations, whatif
from timeline.http.service import Service

DESCRIPTION = """Customer timelines as a service: state, explanations and history of customers, ingestion, and
operations. Callers send `Authorization: Bearer TOKEN` (a token from `timeline access grant`, or a JWT of the
bank's identity provider); what they may see depends on their role. Errors are RFC 9457 problem details."""


def create_app(service: Service | None = None) -> FastAPI:
    """The application serving ``service`` (``None``: only to read its OpenAPI document)."""
    app = FastAPI(
        title="timeline",
        version=__version__,
        description=DESCRIPTION,
        dependencies=[Depends(known_parameters)],
        responses=PROBLEM_RESPONSES,
    )
    app.state.service = service
    problems.install(app)
    for module in (customers, erasure, events, operations, whatif):
        app.include_router(module.router)
    _document_problems(app)
    if service is not None:
        pages.mount(app)
        app.add_middleware(Observed, metrics=service.metrics)
    return app


def _document_problems(app: FastAPI) -> None:
    """Put the problem document's schema in the OpenAPI components, where the responses refer to it."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                ProblemDocument.model_json_schema()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
