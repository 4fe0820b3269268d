"""The signed session cookie: which grant a browser signed in with, never the token itself.

The cookie holds the SHA-256 of the token (what the store keeps), the
session's CSRF token and its expiry, signed with HMAC under a key made when
the service starts (a restart signs everyone out). The grant is looked up on
every request, so a revocation ends the session at once, as it ends the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from fastapi import Request, Response

from timeline.application.access import TOKEN_PREFIX, Unauthenticated, token_hash
from timeline.domain.roles import InvalidPrincipal, Principal, parse_role
from timeline.http.service import Service

SESSION_COOKIE = "tl_session"
LIFETIME = 8 * 3600
"""A working day: then the browser signs in again."""


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    csrf: str
    expires: int


class Sessions:
    """Signs and reads session cookies with a key of this process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _sign(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest()).decode().rstrip("=")

    def new(self, token: str) -> Session:
        return Session(token_hash(token), secrets.token_urlsafe(32), int(time.time()) + LIFETIME)

    def dump(self, session: Session) -> str:
        body = orjson.dumps({"h": session.token_hash, "c": session.csrf, "e": session.expires})
        return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + self._sign(body)

    def load(self, cookie: str | None) -> Session | None:
        """The session a cookie holds; ``None`` for none, a forged or altered one, or an expired one."""
        if not cookie or "." not in cookie:
            return None
        encoded, _, signature = cookie.partition(".")
        try:
            body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        fields = orjson.loads(body)
        session = Session(str(fields["h"]), str(fields["c"]), int(fields["e"]))
        return session if session.expires > time.time() else None


def sign_in(svc: Service, token: str) -> Principal:
    """The principal of a timeline token, or :class:`Unauthenticated` saying why not (the service's check)."""
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated(f"sign in with a token from timeline access grant (it starts with {TOKEN_PREFIX})")
    return svc.authenticator.principal(token)


def principal_of(svc: Service, session: Session | None) -> Principal | None:
    """The principal of the session's grant while that grant is active; ``None`` once it is revoked."""
    if session is None:
        return None
    record = svc.access.grant_by_hash(session.token_hash)
    if record is None or record.revoked_at is not None:
        return None
    try:
        return Principal(record.name, parse_role(record.role), record.rm, record.branch)
    except InvalidPrincipal:
        return None


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int = LIFETIME) -> None:
    """HttpOnly, SameSite=Strict, and Secure whenever the page came over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
