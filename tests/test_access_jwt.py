"""Issue 11: tokens of the bank's identity provider are JWTs, verified against its public key (PEM or JWKS)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from timeline.application.access import Unauthenticated
from timeline.application.access_jwt import ClaimNames, JwtVerifier
from timeline.domain.errors import ConfigurationError
from timeline.domain.roles import Principal, Role

AUDIENCE, ISSUER = "timeline", "https://idp.bank.example"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _claims(**changes) -> dict:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": "li.ming",
        "role": "rm",
        "rm": "RM1",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "exp": now + dt.timedelta(minutes=5),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _token(key=RSA_KEY, algorithm="RS256", headers=None, **changes) -> str:
    return jwt.encode(_claims(**changes), key, algorithm=algorithm, headers=headers)


@pytest.fixture
def pem_file(tmp_path):
    path = tmp_path / "idp.pem"
    path.write_bytes(_pem(RSA_KEY))
    return path


@pytest.fixture
def verifier(pem_file) -> JwtVerifier:
    return JwtVerifier(pem_file, audience=AUDIENCE, issuer=ISSUER)


@pytest.fixture
def jwks_file(tmp_path):
    keys = [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "kid": "rsa-1"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key())), "kid": "ec-1"},
    ]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


def test_a_valid_token_names_its_principal_from_its_claims(verifier):
    assert verifier(_token()) == Principal("li.ming", Role.RM, rm="RM1")


def test_a_branch_claim_scopes_a_branch_head(verifier):
    assert verifier(_token(role="branch_head", rm=None, branch="B7")) == Principal(
        "li.ming", Role.BRANCH_HEAD, branch="B7"
    )


def test_claims_outside_the_role_are_ignored(verifier):
    assert verifier(_token(role="compliance", branch="B7")) == Principal("li.ming", Role.COMPLIANCE)


def test_claim_names_follow_the_identity_providers(pem_file):
    names = ClaimNames(name="email", role="https://bank/role", rm="https://bank/rm")
    token = _token(
        sub=None, email="li@bank.example", role=None, **{"https://bank/role": "rm", "https://bank/rm": "RM2"}
    )
    assert JwtVerifier(pem_file, audience=AUDIENCE, issuer=ISSUER, claims=names)(token) == Principal(
        "li@bank.example", Role.RM, rm="RM2"
    )


def test_an_expired_token_is_refused(verifier):
    with pytest.raises(Unauthenticated, match="^token has expired$"):
        verifier(_token(exp=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)))


def test_a_token_signed_by_another_key_is_refused(verifier):
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        verifier(_token(key=OTHER_RSA_KEY))


def test_a_token_for_another_audience_is_refused(verifier):
    with pytest.raises(Unauthenticated, match="audience is not timeline"):
        verifier(_token(aud="payments"))


def test_a_token_of_another_issuer_is_refused(verifier):
    with pytest.raises(Unauthenticated, match="issuer is not https://idp.bank.example"):
        verifier(_token(iss="https://evil.example"))


def test_a_token_without_expiry_is_refused(verifier):
    with pytest.raises(Unauthenticated, match="lacks the 'exp' claim"):
        verifier(_token(exp=None))


def test_a_token_cannot_choose_a_symmetric_algorithm_keyed_with_the_public_key(verifier):
    """The classic confusion: HS256 with the (public) PEM as its secret, made by hand as PyJWT refuses to."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    claims = _claims(exp=int(dt.datetime.now(dt.UTC).timestamp()) + 60)
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(json.dumps(claims).encode())
    signature = hmac.new(_pem(RSA_KEY), signing_input, hashlib.sha256).digest()
    with pytest.raises(Unauthenticated, match="algorithm"):
        verifier((signing_input + b"." + part(signature)).decode())


def test_an_unsigned_token_is_refused(verifier):
    unsigned = jwt.encode(_claims(exp=int(dt.datetime.now(dt.UTC).timestamp()) + 60), None, algorithm="none")
    with pytest.raises(Unauthenticated, match="algorithm"):
        verifier(unsigned)


def test_garbage_is_not_a_jwt(verifier):
    with pytest.raises(Unauthenticated, match="not a well-formed JWT"):
        verifier("not.a.token")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"role": None}, "no 'role' claim naming a role"),
        ({"role": "admin"}, "unknown role 'admin'"),
        ({"rm": None}, "role rm needs the relationship manager"),
    ],
)
def test_claims_that_name_no_principal_are_refused(verifier, changes, message):
    with pytest.raises(Unauthenticated, match=message):
        verifier(_token(**changes))


def test_a_jwks_file_verifies_by_key_id_rs256_and_es256(jwks_file):
    verifier = JwtVerifier(jwks_file, audience=AUDIENCE, issuer=ISSUER)
    assert verifier(_token(headers={"kid": "rsa-1"})).name == "li.ming"
    assert verifier(_token(key=EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})).role is Role.RM


def test_a_token_naming_a_key_the_jwks_lacks_is_refused(jwks_file):
    with pytest.raises(Unauthenticated, match="signed with key 'rsa-9'"):
        JwtVerifier(jwks_file, audience=AUDIENCE, issuer=ISSUER)(_token(headers={"kid": "rsa-9"}))


def test_a_token_signed_with_one_jwks_key_but_naming_another_is_refused(jwks_file):
    with pytest.raises(Unauthenticated, match="algorithm"):
        JwtVerifier(jwks_file, audience=AUDIENCE, issuer=ISSUER)(_token(headers={"kid": "ec-1"}))


def test_a_key_file_that_is_no_public_key_is_a_configuration_error(tmp_path):
    path = tmp_path / "idp.pem"
    path.write_text("hello")
    with pytest.raises(ConfigurationError, match="neither a PEM public key nor a JWKS file"):
        JwtVerifier(path)


def test_a_missing_key_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the identity provider's key file"):
        JwtVerifier(tmp_path / "absent.pem")


def test_a_leeway_allows_for_clock_skew_with_the_identity_provider(pem_file):
    lenient = JwtVerifier(pem_file, audience=AUDIENCE, issuer=ISSUER, leeway=30)
    assert lenient(_token(exp=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))).name == "li.ming"
