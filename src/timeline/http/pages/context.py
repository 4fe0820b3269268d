"""What each page route starts from: the service, the session, the signed-in principal (or a redirect)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from timeline.domain.roles import Principal
from timeline.http.pages.session import SESSION_COOKIE, Session, Sessions, principal_of
from timeline.http.service import Service


class SignInFirst(Exception):
    """No live session: the browser is sent to the sign-in form."""


@dataclass(frozen=True, slots=True)
class Visit:
    request: Request
    svc: Service
    session: Session | None
    who: Principal | None

    def signed_in(self) -> Principal:
        """The principal, or :class:`SignInFirst`."""
        if self.who is None:
            raise SignInFirst
        return self.who


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions


def visit(request: Request) -> Visit:
    """The request's session and principal; a revoked grant's session counts as none."""
    svc: Service = request.app.state.service
    session = sessions(request).load(request.cookies.get(SESSION_COOKIE))
    who = principal_of(svc, session)
    return Visit(request, svc, session if who else None, who)
