"""Tamper evidence: ``verify`` names the first altered, inserted or missing event of each chain.

The tampering is done as an attacker would: with a plain connection to the
database, switching the append-only guards off where needed (PostgreSQL:
``session_replication_role = replica`` as the superuser; SQLite: dropping the
triggers inside the transaction and putting them back). Both the Python API
and the ``timeline verify`` command are checked, on both backends.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import KEK
from tests.factories import deposit, erased, registered, visit, withdrawal
from tests.test_immutability import Raw
from timeline.application.codec import content_of, encode
from timeline.application.verify import verify
from timeline.domain.errors import TimelineError
from timeline.domain.events import parse_event

TIMELINE = str(Path(sys.executable).with_name("timeline"))


@contextmanager
def guards_off(raw: Raw) -> Iterator[None]:
    """Let UPDATE and DELETE through, as only an administrator could."""
    if raw.postgres:
        raw.execute("SET session_replication_role = replica")
        try:
            yield
        finally:
            raw.execute("SET session_replication_role = DEFAULT")
        return
    triggers = raw.rows("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    assert triggers
    raw.execute("BEGIN")
    for name, _ in triggers:
        raw.execute(f"DROP TRIGGER {name}")
    try:
        yield
    finally:
        for _, sql in triggers:
            raw.execute(sql)
        raw.execute("COMMIT")


@pytest.fixture
def raw(db_url) -> Iterator[Raw]:
    conn = Raw(db_url)
    yield conn
    conn.close()


@pytest.fixture
def ids(engine, clock) -> dict[tuple[str, int], str]:
    """Two customers, C1 with 3 events and C2 with 2; their event ids by (customer, version)."""
    events = [registered(), deposit(), visit(), registered("C2"), deposit("C2", amount="5.00")]
    outcomes = list(engine.ingestor(clock=clock).ingest(list(enumerate(events, 1))))
    assert [o.status for o in outcomes] == ["accepted"] * 5
    versions = {"C1": 0, "C2": 0}
    found = {}
    for o in outcomes:
        versions[o.customer_id] += 1
        found[(o.customer_id, versions[o.customer_id])] = str(o.event_id)
    return found


def kek_text(kek: bytes) -> str:
    """A KEK as ``TIMELINE_KEK`` takes it."""
    return base64.urlsafe_b64encode(kek).decode()


def state_of(raw: Raw, customer: str, version: int) -> bytes:
    [(state,)] = raw.rows(
        "SELECT state FROM timeline_events WHERE originator_id = ? AND originator_version = ?", (customer, version)
    )
    return bytes(state)


def set_state(raw: Raw, customer: str, version: int, state: bytes) -> None:
    with guards_off(raw):
        raw.execute(
            "UPDATE timeline_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (state, customer, version),
        )


def head_hash(raw: Raw, customer: str) -> str:
    return raw.rows("SELECT hash FROM timeline_heads WHERE customer_id = ?", (customer,))[0][0]


def forged(customer: str, version_after_hash: str, **overrides) -> tuple[str, bytes, str]:
    """A well-formed event chained onto ``version_after_hash``: what an attacker can compute without keys."""
    raw_event = withdrawal(customer, amount="999.00", **overrides)
    event = parse_event(raw_event)
    event_id = uuid.UUID(raw_event["event_id"])
    state, digest = encode(content_of(event, event_id), "2026-01-01T00:00:00Z", version_after_hash, None)
    return str(event_id), state, digest


def insert_row(raw: Raw, customer: str, version: int, state: bytes) -> None:
    raw.execute(
        "INSERT INTO timeline_events (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
        (customer, version, "withdrawal.made", state),
    )


def only_finding(store):
    report = verify(store)
    assert not report.intact
    [finding] = report.findings
    return finding


# --- intact stores -----------------------------------------------------------------------------


def test_an_intact_store_verifies_clean(engine, ids):
    report = verify(engine.store)
    assert report.intact
    assert (report.customers, report.events, report.findings) == (2, 5, [])
    one = verify(engine.store, "C2")
    assert (one.customers, one.events, one.intact) == (1, 2, True)


def test_verifying_an_unknown_customer_is_an_error(engine, ids):
    with pytest.raises(TimelineError, match="unknown customer NOBODY"):
        verify(engine.store, "NOBODY")


def test_an_erased_customer_still_verifies_clean(engine, clock, ids):
    events = [withdrawal(amount="1000.00", at="2025-02-01T09:00:00+08:00"), erased()]
    assert [o.status for o in engine.ingestor(clock=clock).ingest(list(enumerate(events, 1)))] == ["accepted"] * 2
    assert engine.store.wrapped_keys(["C1"]) == {"C1": None}
    report = verify(engine.store)
    assert report.intact and report.events == 7
    assert verify(engine.store, "C1").intact


# --- altered ----------------------------------------------------------------------------------


def test_one_changed_byte_of_a_stored_event_is_named_as_altered(engine, raw, ids):
    state = state_of(raw, "C1", 2)
    assert b'"amount":"1000.00"' in state
    set_state(raw, "C1", 2, state.replace(b'"amount":"1000.00"', b'"amount":"9000.00"'))
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C1", "altered", 2, ids["C1", 2])
    assert "do not match the hash" in finding.detail
    assert verify(engine.store, "C2").intact


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_flipped_byte_anywhere_in_the_bytes_is_altered_even_if_they_are_no_longer_json(engine, raw, ids, where):
    state = bytearray(state_of(raw, "C1", 1))
    index = 0 if where == "first" else len(state) - 1
    state[index] ^= 0x01
    set_state(raw, "C1", 1, bytes(state))
    finding = only_finding(engine.store)
    assert (finding.kind, finding.version, finding.event_id) == ("altered", 1, ids["C1", 1])


def test_a_changed_byte_of_encrypted_pii_is_altered(engine, raw, ids):
    state = state_of(raw, "C1", 1)
    obj = json.loads(state)
    sealed = obj["data"]["name"]["$enc"]
    swapped = sealed[:-1] + ("A" if sealed[-1] != "A" else "B")
    set_state(raw, "C1", 1, state.replace(sealed.encode(), swapped.encode()))
    finding = only_finding(engine.store)
    assert (finding.kind, finding.version, finding.event_id) == ("altered", 1, ids["C1", 1])


def test_an_altered_event_whose_index_hash_was_rewritten_too_is_named_by_its_successor(engine, raw, ids):
    """The successor still holds the hash its predecessor had: the predecessor is the altered one."""
    state = state_of(raw, "C1", 2).replace(b'"amount":"1000.00"', b'"amount":"9000.00"')
    from timeline.application.codec import chain_hash

    with guards_off(raw):
        raw.execute(
            "UPDATE timeline_events SET state = ? WHERE originator_id = 'C1' AND originator_version = 2", (state,)
        )
        raw.execute(
            "UPDATE timeline_event_index SET hash = ? WHERE customer_id = 'C1' AND version = 2", (chain_hash(state),)
        )
    finding = only_finding(engine.store)
    assert (finding.kind, finding.version, finding.event_id) == ("altered", 2, ids["C1", 2])


def test_a_rewritten_stream_head_is_named(engine, raw, ids):
    raw.execute("UPDATE timeline_heads SET hash = ? WHERE customer_id = 'C1'", ("f" * 64,))
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version) == ("C1", "altered", 3)


# --- missing ----------------------------------------------------------------------------------


def test_a_deleted_event_in_the_middle_is_named_as_missing(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C1' AND originator_version = 2")
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C1", "missing", 2, ids["C1", 2])


def test_a_deleted_newest_event_is_named_as_missing(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C2' AND originator_version = 2")
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C2", "missing", 2, ids["C2", 2])


def test_a_deleted_newest_event_and_its_index_entry_are_caught_by_the_head(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C1' AND originator_version = 3")
        raw.execute("DELETE FROM timeline_event_index WHERE customer_id = 'C1' AND version = 3")
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version) == ("C1", "missing", 3)


def test_a_deleted_middle_event_and_its_index_entry_leave_a_gap(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C1' AND originator_version = 2")
        raw.execute("DELETE FROM timeline_event_index WHERE customer_id = 'C1' AND version = 2")
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version) == ("C1", "missing", 2)


def test_a_customer_whose_every_row_was_deleted_is_still_checked(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C2'")
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C2", "missing", 1, ids["C2", 1])
    assert not verify(engine.store, "C2").intact


# --- inserted ---------------------------------------------------------------------------------


def test_a_forged_row_appended_without_disabling_anything_is_named_as_inserted(engine, raw, ids):
    """INSERT is allowed (the engine needs it): a forged row that the index never saw is named."""
    event_id, state, _ = forged("C1", head_hash(raw, "C1"))
    insert_row(raw, "C1", 4, state)
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C1", "inserted", 4, event_id)


def test_a_forged_row_with_a_forged_index_entry_is_named_by_the_stream_head(engine, raw, ids):
    event_id, state, digest = forged("C1", head_hash(raw, "C1"))
    insert_row(raw, "C1", 4, state)
    raw.execute(
        "INSERT INTO timeline_event_index (event_id, customer_id, version, hash) VALUES (?, 'C1', 4, ?)",
        (event_id, digest),
    )
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C1", "inserted", 4, event_id)


def test_a_forged_row_put_in_place_of_a_deleted_one_is_named(engine, raw, ids):
    """Replace version 2 by a forged event chained onto version 1: the index still knows the original."""
    event_id, state, _ = forged("C1", json.loads(state_of(raw, "C1", 2))["prev_hash"])
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C1' AND originator_version = 2")
        insert_row(raw, "C1", 2, state)
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C1", "altered", 2, ids["C1", 2])


def test_a_forged_stream_for_a_new_customer_is_named_as_inserted(engine, raw, ids):
    event_id, state, _ = forged("C9", "0" * 64)
    insert_row(raw, "C9", 1, state)
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C9", "inserted", 1, event_id)


def test_a_forged_stream_with_forged_index_entries_but_no_head_is_named(engine, raw, ids):
    event_id, state, digest = forged("C9", "0" * 64)
    insert_row(raw, "C9", 1, state)
    raw.execute(
        "INSERT INTO timeline_event_index (event_id, customer_id, version, hash) VALUES (?, 'C9', 1, ?)",
        (event_id, digest),
    )
    finding = only_finding(engine.store)
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C9", "inserted", 1, event_id)


def test_only_the_first_break_of_each_chain_is_named(engine, raw, ids):
    for customer, version in (("C1", 2), ("C1", 3), ("C2", 1)):
        set_state(raw, customer, version, state_of(raw, customer, version).replace(b'"format":1', b'"format":2'))
    report = verify(engine.store)
    assert [(f.customer_id, f.version) for f in report.findings] == [("C1", 2), ("C2", 1)]


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path, db_url):
    env = {**os.environ, "TIMELINE_DB": db_url, "TIMELINE_KEK": kek_text(KEK)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([TIMELINE, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    return run


def test_the_command_names_the_altered_event_and_exits_1(engine, raw, ids, run):
    set_state(raw, "C1", 2, state_of(raw, "C1", 2).replace(b'"amount":"1000.00"', b'"amount":"1000.01"'))
    text = run("verify")
    assert text.returncode == 1
    assert text.stderr.splitlines() == [
        f"TAMPERED customer C1: altered event at version 2 (event {ids['C1', 2]}): "
        "stored bytes do not match the hash recorded when it was written"
    ]
    assert text.stdout.strip() == "verified 2 customers, 5 events: 1 customer with findings"

    as_json = run("verify", "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert (body["intact"], body["customers"], body["events"], body["pii_checked"]) == (False, 2, 5, True)
    [finding] = body["findings"]
    assert finding | {"detail": None} == {
        "customer_id": "C1",
        "kind": "altered",
        "version": 2,
        "event_id": ids["C1", 2],
        "detail": None,
    }

    other = run("verify", "--customer", "C2", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout) == {
        "intact": True,
        "customers": 1,
        "events": 2,
        "pii_checked": True,
        "findings": [],
        "access_findings": [],
        "policy_findings": [],
    }


def test_the_command_names_missing_and_inserted_events(engine, raw, ids, run):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C2' AND originator_version = 1")
    event_id, state, _ = forged("C1", head_hash(raw, "C1"))
    insert_row(raw, "C1", 4, state)
    result = run("verify", "--json")
    assert result.returncode == 1
    found = {(f["customer_id"], f["kind"], f["version"], f["event_id"]) for f in json.loads(result.stdout)["findings"]}
    assert found == {("C1", "inserted", 4, event_id), ("C2", "missing", 1, ids["C2", 1])}
    one = run("verify", "--customer", "C2")
    assert one.returncode == 1
    assert one.stderr.startswith(f"TAMPERED customer C2: missing event at version 1 (event {ids['C2', 1]})")


def test_the_command_verifies_an_erased_customer_clean(engine, clock, ids, run):
    events = [withdrawal(amount="1000.00", at="2025-02-01T09:00:00+08:00"), erased()]
    list(engine.ingestor(clock=clock).ingest(list(enumerate(events, 1))))
    result = run("verify", "--customer", "C1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "intact": True,
        "customers": 1,
        "events": 5,
        "pii_checked": True,
        "findings": [],
        "access_findings": [],
        "policy_findings": [],
    }


def test_the_command_refuses_an_unknown_customer_in_one_line(engine, ids, run):
    result = run("verify", "--customer", "NOBODY")
    assert result.returncode == 2
    assert result.stderr.strip() == "timeline: error: unknown customer NOBODY: no events stored"
