"""Access: API tokens granted to principals, and the hash-chained trail of who saw which customer.

Tokens are checked against the store on every request (one indexed read), so a
grant or a revocation takes effect on a running service from the next request. Tokens signed by the
bank's identity provider are verified by :class:`timeline.application.access_jwt.JwtVerifier`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from timeline.application.codec import GENESIS_HASH
from timeline.application.ports import AccessRecord, AccessStore, GrantRecord
from timeline.domain.errors import ConcurrencyConflict, TimelineError
from timeline.domain.roles import Action, InvalidPrincipal, Principal, Role, parse_role

Clock = Callable[[], dt.datetime]

TOKEN_PREFIX = "tl_"
"""Marks timeline's own tokens, so a leaked one is recognisable (secret scanners) and told from a JWT."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
PURPOSE_MAX = 200
APPEND_ATTEMPTS = 20
GROUP_MAX = 100
"""Records appended by one statement at most (SQLite binds at most 32,766 parameters, nine a record)."""
PAGE = 1000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp(moment: dt.datetime) -> str:
    """Fixed-width UTC text (microseconds always), so stored instants compare as text."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AccessError(TimelineError):
    """A grant, a revocation or an access record that cannot be made as asked."""


class Unauthenticated(TimelineError):
    """The credentials name no principal: no token, an unknown or revoked one, or a JWT that does not verify."""


def token_hash(token: str) -> str:
    """SHA-256 of a token, as stored.

    A fast hash is right here: a token is 256 random bits, so there is no
    dictionary to try and nothing a slow password hash (bcrypt, argon2) would
    add, while each request pays for the hash.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant as listed: the principal it names, when it was made and when (if) it was revoked."""

    principal: Principal
    granted_at: str
    revoked_at: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.principal.name,
            "role": str(self.principal.role),
            "rm": self.principal.rm,
            "branch": self.principal.branch,
            "granted_at": self.granted_at,
            "revoked_at": self.revoked_at,
        }


class Grants:
    """API tokens: granted once (only a hash is kept), revoked by name, checked on every request."""

    def __init__(self, store: AccessStore, clock: Clock = utcnow) -> None:
        self.store, self.clock = store, clock

    def grant(self, name: str, role: Role | str, rm: str | None = None, branch: str | None = None) -> str:
        """Grant ``name`` the role and return its new token: the only time the token exists outside the caller."""
        if not NAME.fullmatch(name):
            raise AccessError(
                f"grant name {name!r} must be 1 to 64 letters, digits or . _ @ - (starting with a letter or digit)"
            )
        principal = Principal(name, parse_role(str(role)), rm or None, branch or None)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = GrantRecord(
            principal.name,
            str(principal.role),
            principal.rm,
            principal.branch,
            token_hash(token),
            stamp(self.clock()),
        )
        if not self.store.add_grant(record):
            raise AccessError(f"{name} already holds an active grant: revoke it first (timeline access revoke {name})")
        return token

    def revoke(self, name: str) -> None:
        """Revoke the name's active grant: its token is refused from the next request on."""
        if not self.store.revoke_grant(name, stamp(self.clock())):
            raise AccessError(f"{name} holds no active grant")

    def list(self) -> list[Grant]:
        """Every grant, active and revoked, oldest first."""
        return [
            Grant(Principal(g.name, parse_role(g.role), g.rm, g.branch), g.granted_at, g.revoked_at)
            for g in self.store.grants()
        ]

    def authenticate(self, token: str) -> Principal | None:
        """The principal of an active grant holding this token, ``None`` for any other token."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = token_hash(token)
        record = self.store.grant_by_hash(digest)
        if record is None or record.revoked_at is not None or not hmac.compare_digest(record.token_hash, digest):
            return None
        try:
            return Principal(record.name, parse_role(record.role), record.rm, record.branch)
        except InvalidPrincipal:
            return None  # a row the engine never wrote grants nothing


def record_hash(
    seq: int, at: str, principal: str, role: str, customer_id: str | None, what: str, purpose: str | None, prev: str
) -> str:
    """The chain hash of one record: SHA-256 of its fields and its predecessor's hash, as a JSON array."""
    return hashlib.sha256(orjson.dumps([seq, at, principal, role, customer_id, what, purpose, prev])).hexdigest()


def _expected_hash(record: AccessRecord, prev: str) -> str:
    return record_hash(
        record.seq, record.at, record.principal, record.role, record.customer_id, record.what, record.purpose, prev
    )


@dataclass(frozen=True, slots=True)
class AccessFinding:
    """The first break in the access trail's chain."""

    seq: int
    kind: str
    """``altered`` or ``missing``, as for events."""
    detail: str

    def __str__(self) -> str:
        return f"access log: {self.kind} record {self.seq}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {"log": "access", "seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass(slots=True)
class _Ask:
    """One access waiting for its record: filled in (or failed) by whichever caller writes the group."""

    principal: Principal
    customer_id: str | None
    what: str
    purpose: str | None
    record: AccessRecord | None = None
    error: BaseException | None = None


class AccessTrail:
    """Who saw which customer, when, and why: an append-only, hash-chained log in the store's database.

    Each record holds its predecessor's hash, so a changed or removed record
    breaks the chain at the next one. Removing the newest records, with the
    database's triggers dropped first, leaves a shorter chain that is still
    whole: like the newest event, that is beyond an in-database check.

    Appends are group-committed: accesses recorded while another caller's
    transaction is being written wait for it, and the first of them then
    writes all that have gathered in one transaction. Every caller returns
    only once its own record is committed, so no response goes out before
    its record is durable; the commit is paid once per group, not per access.
    """

    def __init__(self, store: AccessStore, clock: Clock = utcnow) -> None:
        self.store, self.clock = store, clock
        self._waiting: list[_Ask] = []
        self._gathering = threading.Lock()
        self._writing = threading.Lock()
        self._head: AccessRecord | None = None
        """The newest record this trail wrote (a guess: another writer may have appended since)."""

    def append(
        self, principal: Principal, customer_id: str | None, what: Action | str, purpose: str | None = None
    ) -> AccessRecord:
        """Record one access, committed when this returns; concurrent callers share one transaction."""
        if purpose is not None:
            purpose = _checked_purpose(purpose)
        ask = _Ask(principal, customer_id, str(what), purpose)
        with self._gathering:
            self._waiting.append(ask)
        while ask.record is None and ask.error is None:
            with self._writing:
                if ask.record is None and ask.error is None:
                    with self._gathering:
                        group, self._waiting = self._waiting[:GROUP_MAX], self._waiting[GROUP_MAX:]
                    self._write_group(group)
        if ask.error is not None:
            raise ask.error
        return ask.record  # type: ignore[return-value]

    def _write_group(self, group: list[_Ask]) -> None:
        try:
            records = self._append(group)
        except BaseException as exc:  # every caller of the group sees why its access was not recorded
            for ask in group:
                ask.error = exc
            return
        for ask, record in zip(group, records, strict=True):
            ask.record = record

    def _append(self, group: list[_Ask]) -> list[AccessRecord]:
        """Chain the group after the newest record and append it whole, re-reading the head after a lost race."""
        head = self._head
        for attempt in range(APPEND_ATTEMPTS):
            if head is None or attempt:
                head = self.store.access_head()
            records = []
            seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            for ask in group:
                seq, at = seq + 1, stamp(self.clock())
                fields = (seq, at, ask.principal.name, str(ask.principal.role), ask.customer_id, ask.what, ask.purpose)
                digest = record_hash(*fields, prev)
                records.append(AccessRecord(*fields, prev, digest))
                prev = digest
            if self.store.append_accesses(records):
                self._head = records[-1]
                return records
        self._head = None
        raise ConcurrencyConflict(f"the access log moved on {APPEND_ATTEMPTS} times while recording an access")

    def read(
        self, customer_id: str | None = None, principal: str | None = None, since: dt.datetime | None = None
    ) -> Iterator[AccessRecord]:
        """The records, oldest first, of one customer and/or principal, from ``since`` on."""
        after = 0
        while True:
            page = self.store.read_access(after, PAGE, customer_id, principal, stamp(since) if since else None)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].seq

    def verify(self) -> AccessFinding | None:
        """The first broken record: a gap in the sequence, or a record whose hash is not its content's."""
        prev, expected = GENESIS_HASH, 1
        for record in self.read():
            if record.seq != expected:
                return AccessFinding(expected, "missing", f"the log goes from record {expected - 1} to {record.seq}")
            if record.hash != _expected_hash(record, record.prev_hash):
                return AccessFinding(record.seq, "altered", "its stored fields do not match its hash")
            if record.prev_hash != prev:
                return AccessFinding(
                    record.seq - 1,
                    "altered",
                    f"its hash no longer matches the one recorded by the next record ({record.seq})",
                )
            prev, expected = record.hash, expected + 1
        return None


def verify_access(store: AccessStore) -> list[AccessFinding]:
    """What ``timeline verify`` reports of the access trail: its first break, if any."""
    finding = AccessTrail(store).verify()
    return [finding] if finding else []


def _checked_purpose(purpose: str) -> str:
    """The stated purpose of an access (``X-Purpose``): one line of printable text, bounded."""
    if len(purpose) > PURPOSE_MAX:
        raise AccessError(f"purpose is {len(purpose)} characters long: at most {PURPOSE_MAX}")
    if not purpose.isprintable():
        raise AccessError("purpose must be printable text on one line")
    return purpose


class Authenticator:
    """A bearer token → its principal: timeline's own tokens first, else a JWT of the identity provider."""

    def __init__(self, grants: Grants, jwt: Callable[[str], Principal] | None = None) -> None:
        self.grants, self.jwt = grants, jwt

    def principal(self, token: str | None) -> Principal:
        """Raise :class:`Unauthenticated` (HTTP 401) with the reason unless the token names a principal."""
        if not token:
            raise Unauthenticated("no bearer token: send Authorization: Bearer TOKEN")
        if token.startswith(TOKEN_PREFIX):
            found = self.grants.authenticate(token)
            if found is None:
                raise Unauthenticated("unknown or revoked token")
            return found
        if self.jwt is None:
            raise Unauthenticated(f"not a timeline token ({TOKEN_PREFIX}…) and no identity provider is configured")
        return self.jwt(token)
