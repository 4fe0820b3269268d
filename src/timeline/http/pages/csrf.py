"""CSRF: every form carries a token the server checks on every POST.

Signed in, the token is the session's (inside the signed cookie); before
sign-in, a random token is set in its own cookie and the form must repeat it
(double submit). A cross-site page can read neither, and SameSite=Strict keeps
the cookies off its requests anyway.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from fastapi import Request

from timeline.http.pages.session import Session
from timeline.http.problems import Problem

PRE_SESSION_COOKIE = "tl_csrf"
FIELD = "csrf"
MAX_FORM = 16 * 1024


def form_token(request: Request, session: Session | None) -> tuple[str, bool]:
    """The token the page's forms carry, and whether it is new (to be set in the pre-session cookie)."""
    if session is not None:
        return session.csrf, False
    existing = request.cookies.get(PRE_SESSION_COOKIE)
    return (existing, False) if existing else (secrets.token_urlsafe(32), True)


async def checked_form(request: Request, session: Session | None) -> dict[str, str]:
    """The POSTed form's fields, refused with 403 unless its CSRF token is the one expected."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Problem(413, f"a form is at most {MAX_FORM} bytes")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    expected = session.csrf if session is not None else request.cookies.get(PRE_SESSION_COOKIE)
    sent = fields.get(FIELD, "")
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise Problem(403, "the form's CSRF token is missing or wrong: reload the page and send it again")
    return fields
