"""Issue 11: API tokens granted to principals, and the access trail that the database keeps append-only.

Each test runs on both backends (the ``store`` fixture): grants and the trail
live in the store's database. Changes behind the engine's back go through a
plain DB-API connection, as the PostgreSQL superuser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from typing import Any

import psycopg
import pytest

from tests.support.backends import sql_backends
from timeline.application.access import (
    TOKEN_PREFIX,
    AccessError,
    AccessTrail,
    Authenticator,
    Grants,
    Unauthenticated,
    record_hash,
    verify_access,
)
from timeline.application.verify import verify
from timeline.domain.roles import Action, Principal, Role
from timeline.store import open_store
from timeline.store.access_sql import ACCESS_LOG_TABLE, GRANTS_TABLE, access_store

pytestmark = sql_backends  # grants and the access log live in a SQL store only

REFUSED = (sqlite3.IntegrityError, psycopg.errors.InsufficientPrivilege)
AUDITOR = Principal("audit.zhang", Role.COMPLIANCE)
RM1 = Principal("li.ming", Role.RM, rm="RM1")


class Raw:
    """A plain autocommit connection to the store's database, outside the engine."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith("postgresql://")
        if self.postgres:
            self.conn: Any = psycopg.connect(url, autocommit=True)
        else:
            self.conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None, timeout=30)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.conn.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql)]

    def behind_the_triggers(self, sql: str) -> None:
        """Run a change the triggers would refuse, as an attacker with the database's owner rights can."""
        if self.postgres:
            self.execute(f"ALTER TABLE {ACCESS_LOG_TABLE} DISABLE TRIGGER USER")
            self.execute(sql)
        else:
            for op in ("update", "delete"):
                self.execute(f"DROP TRIGGER {ACCESS_LOG_TABLE}_no_{op}")
            self.execute(sql)


@pytest.fixture
def raw(db_url, store):
    connection = Raw(db_url)
    yield connection
    connection.conn.close()


@pytest.fixture
def access(store):
    return access_store(store)


@pytest.fixture
def sqlite_access(sqlite_url):
    """For rules of the application alone, which one backend shows."""
    store = open_store(sqlite_url)
    yield access_store(store)
    store.close()


class Ticking:
    """A clock one second further on at each reading."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


# Grants


def test_a_grant_hands_out_a_recognisable_token_that_names_its_principal(access):
    token = Grants(access).grant("li.ming", "rm", rm="RM1")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert Grants(access).authenticate(token) == RM1


def test_only_the_tokens_sha256_is_stored(access, raw):
    token = Grants(access).grant("audit.zhang", Role.COMPLIANCE)
    stored = raw.rows(f"SELECT * FROM {GRANTS_TABLE}")
    assert not any(token in str(value) for row in stored for value in row)
    assert raw.rows(f"SELECT token_hash FROM {GRANTS_TABLE}") == [(hashlib.sha256(token.encode()).hexdigest(),)]


def test_an_unknown_or_foreign_token_names_no_principal(sqlite_access):
    Grants(sqlite_access).grant("audit.zhang", Role.COMPLIANCE)
    assert Grants(sqlite_access).authenticate(TOKEN_PREFIX + "x" * 43) is None
    assert Grants(sqlite_access).authenticate("eyJhbGciOi.not.ours") is None


def test_a_revocation_takes_effect_at_once_for_another_process_on_the_same_store(access, db_url):
    token = Grants(access).grant("li.ming", "rm", rm="RM1")
    running = open_store(db_url, create=False)  # a running service, started before the revocation
    try:
        service = Grants(access_store(running))
        assert service.authenticate(token) == RM1
        Grants(access).revoke("li.ming")
        assert service.authenticate(token) is None
    finally:
        running.close()


def test_a_grant_takes_effect_at_once_for_another_process_on_the_same_store(access, db_url):
    running = open_store(db_url, create=False)
    try:
        service = Grants(access_store(running))
        token = Grants(access).grant("ops.chen", "ops")
        assert service.authenticate(token) == Principal("ops.chen", Role.OPS)
    finally:
        running.close()


def test_a_name_holds_one_active_grant_and_may_be_granted_again_after_revocation(access):
    grants = Grants(access)
    first = grants.grant("li.ming", "rm", rm="RM1")
    with pytest.raises(AccessError, match="li.ming already holds an active grant: revoke it first"):
        grants.grant("li.ming", "compliance")
    grants.revoke("li.ming")
    second = grants.grant("li.ming", "branch_head", branch="B1")
    assert grants.authenticate(first) is None
    assert grants.authenticate(second) == Principal("li.ming", Role.BRANCH_HEAD, branch="B1")
    assert [(g.principal.role, g.revoked_at is None) for g in grants.list()] == [
        (Role.RM, False),
        (Role.BRANCH_HEAD, True),
    ]


def test_revoking_a_name_without_an_active_grant_is_an_error(sqlite_access):
    with pytest.raises(AccessError, match="nobody holds no active grant"):
        Grants(sqlite_access).revoke("nobody")


@pytest.mark.parametrize("name", ["", "two words", "-dash", "x" * 65])
def test_a_grant_name_is_a_short_identifier(sqlite_access, name):
    with pytest.raises(AccessError, match="grant name"):
        Grants(sqlite_access).grant(name, "ops")


def test_the_database_refuses_to_delete_a_grant_or_change_it_but_to_revoke(access, raw):
    Grants(access).grant("li.ming", "rm", rm="RM1")
    for statement in (
        f"DELETE FROM {GRANTS_TABLE}",
        f"UPDATE {GRANTS_TABLE} SET role = 'compliance', rm = NULL",
        f"UPDATE {GRANTS_TABLE} SET token_hash = 'mine'",
    ):
        with pytest.raises(REFUSED, match="only revoked once"):
            raw.execute(statement)
    Grants(access).revoke("li.ming")
    with pytest.raises(REFUSED, match="only revoked once"):
        raw.execute(f"UPDATE {GRANTS_TABLE} SET revoked_at = NULL")
    if raw.postgres:
        with pytest.raises(REFUSED, match="append-only"):
            raw.execute(f"TRUNCATE {GRANTS_TABLE}")
    assert [g.revoked_at is not None for g in Grants(access).list()] == [True]


def test_the_authenticator_says_why_a_request_has_no_principal(sqlite_access):
    token = Grants(sqlite_access).grant("audit.zhang", "compliance")
    auth = Authenticator(Grants(sqlite_access))
    assert auth.principal(token) == AUDITOR
    with pytest.raises(Unauthenticated, match="no bearer token"):
        auth.principal(None)
    with pytest.raises(Unauthenticated, match="unknown or revoked token"):
        auth.principal(TOKEN_PREFIX + "forged")
    with pytest.raises(Unauthenticated, match="no identity provider is configured"):
        auth.principal("eyJhbGciOi.x.y")


# The access trail


def test_each_record_chains_to_the_one_before(access):
    trail = AccessTrail(access, clock=Ticking())
    first = trail.append(AUDITOR, "C1", Action.HISTORY_PII, "complaint 2026-17")
    second = trail.append(RM1, "C2", Action.STATE)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == "0" * 64 and second.prev_hash == first.hash
    assert trail.verify() is None
    assert verify_access(access) == []


def test_the_trail_reads_by_customer_principal_and_time(access):
    trail = AccessTrail(access, clock=Ticking())
    trail.append(AUDITOR, "C1", Action.HISTORY_PII)
    trail.append(RM1, "C1", Action.STATE, "call-back")
    trail.append(RM1, "C2", Action.EXPLAIN)
    assert [r.seq for r in trail.read(customer_id="C1")] == [1, 2]
    assert [r.seq for r in trail.read(principal="li.ming")] == [2, 3]
    assert [r.seq for r in trail.read(customer_id="C1", principal="li.ming")] == [2]
    assert [r.seq for r in trail.read(since=dt.datetime(2026, 3, 1, 9, 0, 2, tzinfo=dt.UTC))] == [2, 3]
    second = next(trail.read(principal="li.ming"))
    assert second.to_json() == {
        "seq": 2,
        "at": "2026-03-01T09:00:02.000000Z",
        "principal": "li.ming",
        "role": "rm",
        "customer_id": "C1",
        "what": "state",
        "purpose": "call-back",
        "hash": second.hash,
    }


def test_concurrent_writers_each_get_the_next_place_in_the_chain(db_url, access):
    def record(n: int) -> None:
        store = open_store(db_url, create=False)
        try:
            trail = AccessTrail(access_store(store))
            for i in range(10):
                trail.append(RM1, f"C{n}-{i}", Action.STATE)
        finally:
            store.close()

    threads = [threading.Thread(target=record, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.seq for r in AccessTrail(access).read()] == list(range(1, 31))
    assert AccessTrail(access).verify() is None


@pytest.mark.parametrize("purpose", ["x" * 201, "two\nlines"])
def test_a_purpose_is_one_short_line(sqlite_access, purpose):
    with pytest.raises(AccessError, match="purpose"):
        AccessTrail(sqlite_access).append(RM1, "C1", Action.STATE, purpose)
    assert sqlite_access.access_head() is None


@pytest.mark.parametrize(
    "statement",
    [
        f"UPDATE {ACCESS_LOG_TABLE} SET purpose = 'nothing to see'",
        f"UPDATE {ACCESS_LOG_TABLE} SET principal = principal",
        f"DELETE FROM {ACCESS_LOG_TABLE} WHERE seq = 1",
        f"DELETE FROM {ACCESS_LOG_TABLE}",
    ],
)
def test_the_database_refuses_to_change_or_delete_an_access_record(access, raw, statement):
    AccessTrail(access).append(AUDITOR, "C1", Action.HISTORY_PII, "audit")
    before = raw.rows(f"SELECT * FROM {ACCESS_LOG_TABLE}")
    with pytest.raises(REFUSED, match="append-only"):
        raw.execute(statement)
    assert raw.rows(f"SELECT * FROM {ACCESS_LOG_TABLE}") == before


def test_the_database_refuses_to_overwrite_an_access_record_by_insert(access, raw):
    AccessTrail(access).append(AUDITOR, "C1", Action.HISTORY_PII)
    before = raw.rows(f"SELECT * FROM {ACCESS_LOG_TABLE}")
    if raw.postgres:
        overwrite = (
            f"INSERT INTO {ACCESS_LOG_TABLE} SELECT * FROM {ACCESS_LOG_TABLE} "
            "ON CONFLICT (seq) DO UPDATE SET customer_id = 'C9'"
        )
        with pytest.raises(REFUSED, match="append-only"):
            raw.execute(overwrite)
        with pytest.raises(REFUSED, match="append-only"):
            raw.execute(f"TRUNCATE {ACCESS_LOG_TABLE}")
    else:
        with pytest.raises(REFUSED, match="append-only"):
            raw.execute(f"INSERT OR REPLACE INTO {ACCESS_LOG_TABLE} SELECT * FROM {ACCESS_LOG_TABLE}")
    assert raw.rows(f"SELECT * FROM {ACCESS_LOG_TABLE}") == before


def _three_records(access) -> None:
    trail = AccessTrail(access, clock=Ticking())
    for customer in ("C1", "C2", "C3"):
        trail.append(AUDITOR, customer, Action.HISTORY_PII)


def test_verify_names_an_access_record_changed_behind_the_triggers(store, access, raw):
    _three_records(access)
    raw.behind_the_triggers(f"UPDATE {ACCESS_LOG_TABLE} SET customer_id = 'C9' WHERE seq = 2")
    report = verify(store, access=access)
    assert not report.intact
    assert [str(f) for f in report.access_findings] == [
        "access log: altered record 2: its stored fields do not match its hash"
    ]


def test_verify_names_a_record_rewritten_with_its_hash_by_the_next_records_link(access, raw):
    _three_records(access)
    [record] = [r for r in AccessTrail(access).read(customer_id="C2")]
    forged = record_hash(2, record.at, "nobody", "compliance", "C2", record.what, None, record.prev_hash)
    raw.behind_the_triggers(f"UPDATE {ACCESS_LOG_TABLE} SET principal = 'nobody', hash = '{forged}' WHERE seq = 2")
    [finding] = verify_access(access)
    assert (finding.seq, finding.kind) == (2, "altered")
    assert "next record (3)" in finding.detail


def test_verify_names_a_deleted_access_record(access, raw):
    _three_records(access)
    raw.behind_the_triggers(f"DELETE FROM {ACCESS_LOG_TABLE} WHERE seq = 2")
    assert [f.to_json() for f in verify_access(access)] == [
        {"log": "access", "seq": 2, "kind": "missing", "detail": "the log goes from record 1 to 3"}
    ]


def test_verify_of_one_customer_leaves_the_trail_alone(store, access, raw):
    _three_records(access)
    raw.behind_the_triggers(f"DELETE FROM {ACCESS_LOG_TABLE} WHERE seq = 2")
    assert verify(store, access=access).access_findings
    assert verify(store, access=None).intact
