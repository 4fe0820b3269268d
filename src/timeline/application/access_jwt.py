"""Tokens of the bank's identity provider: JWTs verified with PyJWT against a configured public key.

The key is a PEM public key file (RSA → RS256, P-256 → ES256) or a JWKS file
(keys chosen by the token's ``kid``). Only the algorithm of the chosen key is
accepted, so a token cannot pick its own (``none``, or HS256 keyed with the
public key). Tokens must carry ``exp`` and a subject; the subject names the
principal in the access trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from timeline.application.access import Unauthenticated
from timeline.domain.errors import ConfigurationError
from timeline.domain.roles import InvalidPrincipal, Principal, Role, parse_role

ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Which claims of the identity provider's tokens carry the principal's name, role, rm and branch."""

    name: str = "sub"
    role: str = "role"
    rm: str = "rm"
    branch: str = "branch"


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithm: str


class JwtVerifier:
    """A JWT → its :class:`Principal`, or :class:`Unauthenticated` saying precisely why not."""

    def __init__(
        self,
        key_file: Path,
        audience: str | None = None,
        issuer: str | None = None,
        claims: ClaimNames = ClaimNames(),
        leeway: float = 0,
    ) -> None:
        """``audience``/``issuer``: required values of ``aud``/``iss``; ``leeway``: seconds of clock skew allowed."""
        self.keys = _load_keys(key_file)
        self.audience, self.issuer, self.claims, self.leeway = audience, issuer, claims, leeway

    def __call__(self, token: str) -> Principal:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", self.claims.name]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(_reason(exc, self.audience, self.issuer)) from None
        return self._principal(claims)

    def _key_for(self, token: str) -> _Key:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("token is not a well-formed JWT") from None
        kid = header.get("kid")
        if kid is not None and kid in self.keys:
            return self.keys[kid]
        if len(self.keys) == 1 and (kid is None or None in self.keys):
            return next(iter(self.keys.values()))
        if kid is None:
            raise Unauthenticated("token names no key (kid) and the identity provider's key set holds several")
        raise Unauthenticated(f"token is signed with key {kid!r}, which the identity provider's key set lacks")

    def _principal(self, claims: dict[str, Any]) -> Principal:
        names = self.claims
        role_claim = claims.get(names.role)
        if not isinstance(role_claim, str):
            raise Unauthenticated(f"token has no {names.role!r} claim naming a role")
        try:
            role = parse_role(role_claim)
            rm = _text(claims, names.rm) if role is Role.RM else None
            branch = _text(claims, names.branch) if role is Role.BRANCH_HEAD else None
            return Principal(str(claims[names.name]), role, rm, branch)
        except InvalidPrincipal as exc:
            raise Unauthenticated(f"token claims do not name a principal: {exc}") from None


def _text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return str(value) if value is not None else None


def _reason(exc: jwt.InvalidTokenError, audience: str | None, issuer: str | None) -> str:
    """One precise line for each way a token fails."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature does not verify with the identity provider's key"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"token audience is not {audience}" if audience else "token has an audience, and none is configured"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"token issuer is not {issuer}"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not valid yet"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token is signed with an algorithm the identity provider's key does not use"
    if isinstance(exc, jwt.DecodeError):
        return "token is not a well-formed JWT"
    return f"token refused: {exc}"


def _load_keys(path: Path) -> dict[str | None, _Key]:
    """The verification keys of a PEM or JWKS file, by key id (``None``: a PEM key, which has none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the identity provider's key file {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        return _jwks(path, text)
    try:
        key = load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigurationError(f"{path} is neither a PEM public key nor a JWKS file") from None
    if isinstance(key, rsa.RSAPublicKey):
        return {None: _Key(key, "RS256")}
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return {None: _Key(key, "ES256")}
    raise ConfigurationError(f"{path}: the key must be RSA (RS256) or EC P-256 (ES256)")


def _jwks(path: Path, text: str) -> dict[str | None, _Key]:
    try:
        keys = jwt.PyJWKSet.from_json(text).keys
    except (jwt.PyJWKSetError, jwt.PyJWKError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path} is not a usable JWKS file: {exc}") from None
    found: dict[str | None, _Key] = {}
    for k in keys:
        if k.algorithm_name not in ALGORITHMS:
            raise ConfigurationError(
                f"{path}: key {k.key_id!r} is {k.algorithm_name}; only RS256 and ES256 are accepted"
            )
        found[k.key_id] = _Key(k.key, k.algorithm_name)
    return found
