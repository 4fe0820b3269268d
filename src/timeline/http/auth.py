"""Who is asking: the bearer token → a :class:`~timeline.domain.roles.Principal`, and what it may do."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from timeline.application.access import Unauthenticated
from timeline.domain.roles import Action, Principal, authorize
from timeline.http.service import Service

bearer = HTTPBearer(auto_error=False, description="A timeline API token (timeline access grant) or the bank's JWT")


async def service(request: Request) -> Service:
    """The service this app serves (set by :func:`timeline.http.app.create_app`); ``async`` so that FastAPI does
    not hop to a worker thread for it."""
    return request.app.state.service


def principal_of(request: Request, svc: Service) -> Principal:
    """The caller, or 401 saying why not: no header, another scheme, an unknown, revoked, expired or forged token."""
    header = request.headers.get("authorization")
    if header is None:
        return svc.authenticator.principal(None)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be: Bearer TOKEN")
    return svc.authenticator.principal(token.strip())


def principal(
    request: Request,
    svc: Annotated[Service, Depends(service)],
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """:func:`principal_of` as a dependency (``bearer`` only puts the scheme in the OpenAPI document)."""
    return principal_of(request, svc)


Caller = Annotated[Principal, Depends(principal)]
Svc = Annotated[Service, Depends(service)]


def may(action: Action) -> object:
    """A dependency: the caller, refused with 403 unless their role is granted ``action``."""

    def allowed(who: Caller) -> Principal:
        authorize(who, action)
        return who

    return Depends(allowed)
