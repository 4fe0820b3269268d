"""Who is asking: the bearer token → a :class:`~timeline.domain.roles.Principal`, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Credentials:
    """The caller's ``Authorization`` header, checked when the route asks for its :meth:`principal`.

    For a plain ``def`` route: the check reads the grants from the store, and a ``def`` dependency would run it in
    a worker thread of its own before the route's, two thread hops a request; this way the route checks in its
    own thread, one hop. The hottest routes (a customer's state, explanation, history) take this."""

    request: Request
    svc: Service

    def principal(self) -> Principal:
        return principal_of(self.request, self.svc)


async def credentials(
    request: Request,
    svc: Annotated[Service, Depends(service)],
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Credentials:
    """:class:`Credentials` as a dependency, unchecked (``bearer`` only puts the scheme in the OpenAPI document)."""
    return Credentials(request, svc)


Caller = Annotated[Principal, Depends(principal)]
Asker = Annotated[Credentials, Depends(credentials)]
Svc = Annotated[Service, Depends(service)]


def may(action: Action) -> object:
    """A dependency: the caller, refused with 403 unless their role is granted ``action``.

    ``async``: the check reads nothing, and a plain function would cost a worker-thread hop of its own."""

    async def allowed(who: Caller) -> Principal:
        authorize(who, action)
        return who

    return Depends(allowed)
