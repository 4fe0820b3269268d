"""``verify`` at the edges: every table's customers, malformed stored values, and keys.

Tampering is done with real SQL on a plain connection, guards off where the
database refuses it (``tests.test_tamper_evidence.guards_off``). A reader that
meets a malformed stored value fails in one line naming the event and pointing
to ``timeline verify``, never with a traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import uuid

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests import test_tamper_evidence as tamper
from tests.conftest import KEK
from tests.factories import erased, event, registered, withdrawal
from tests.test_tamper_evidence import TIMELINE, guards_off, set_state, state_of
from timeline.application.codec import canonical_bytes, chain_hash
from timeline.application.sealing import seal
from timeline.application.verify import verify
from timeline.crypto import KeyWrapper
from timeline.domain.errors import CorruptEvent

WRAPPER = KeyWrapper(KEK)
ids, raw, run = tamper.ids, tamper.raw, tamper.run
"""The fixtures of ``tests.test_tamper_evidence``: its two customers, a raw connection, the command."""


def findings(store, wrapper=WRAPPER) -> list[tuple]:
    report = verify(store, wrapper=wrapper)
    return [(f.customer_id, f.kind, f.version, f.event_id) for f in report.findings]


def rewrite_newest(raw, customer: str, version: int, state: bytes) -> None:
    """Replace the newest event and its index entry and head consistently: only its content can tell."""
    digest = chain_hash(state)
    with guards_off(raw):
        raw.execute(
            "UPDATE timeline_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (state, customer, version),
        )
        raw.execute(
            "UPDATE timeline_event_index SET hash = ? WHERE customer_id = ? AND version = ?",
            (digest, customer, version),
        )
        raw.execute("UPDATE timeline_heads SET hash = ? WHERE customer_id = ?", (digest, customer))


# --- every table's customers ---------------------------------------------------------------------


def test_a_customer_whose_events_and_head_were_deleted_is_found_by_its_index_entries(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C2'")
        raw.execute("DELETE FROM timeline_heads WHERE customer_id = 'C2'")
    report = verify(engine.store)
    assert report.customers == 2
    [finding] = report.findings
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C2", "missing", 1, ids["C2", 1])


def test_a_customer_of_whom_only_the_data_key_is_left_is_found(engine, raw, ids):
    with guards_off(raw):
        for table, column in (("timeline_events", "originator_id"), ("timeline_event_index", "customer_id")):
            raw.execute(f"DELETE FROM {table} WHERE {column} = 'C2'")
        raw.execute("DELETE FROM timeline_heads WHERE customer_id = 'C2'")
    assert findings(engine.store) == [("C2", "missing", 1, None)]


def test_a_referral_whose_event_is_gone_from_every_stream_table_is_found_through_the_referred(engine, clock, raw):
    referral = event("referral.made", "A", "2025-01-05T09:00:00+08:00", {"referred_customer_id": "R"})
    outcomes = list(engine.ingestor(clock=clock).ingest(list(enumerate([registered("A"), referral], 1))))
    assert [o.status for o in outcomes] == ["accepted"] * 2
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'A'")
        for table in ("timeline_event_index", "timeline_heads", "timeline_keys"):
            raw.execute(f"DELETE FROM {table} WHERE customer_id = 'A'")
    report = verify(engine.store)
    assert report.customers == 1
    [finding] = report.findings
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == (
        "R",
        "missing",
        None,
        referral["event_id"],
    )
    assert str(finding).startswith(f"customer R: missing event (event {referral['event_id']}): the referral index")


def test_the_command_finds_a_customer_whose_events_and_head_were_deleted(engine, raw, ids, run):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_events WHERE originator_id = 'C2'")
        raw.execute("DELETE FROM timeline_heads WHERE customer_id = 'C2'")
    result = run("verify")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"TAMPERED customer C2: missing event at version 1 (event {ids['C2', 1]}): indexed event has no stored row"
    ]
    assert result.stdout.splitlines() == ["verified 2 customers, 3 events: 1 customer with findings"]


# --- malformed stored values ---------------------------------------------------------------------

MALFORMED = {
    "not-json": lambda state: state[: len(state) // 2],
    "not-an-object": lambda state: b"[1, 2, 3]",
    "missing-field": lambda state: canonical_bytes({k: v for k, v in json.loads(state).items() if k != "occurred_at"}),
    "wrong-type": lambda state: canonical_bytes({**json.loads(state), "schema_version": "1"}),
    "data-not-an-object": lambda state: canonical_bytes({**json.loads(state), "data": "x"}),
    "data-value-of-no-model": lambda state: state.replace(b'"amount":"', b'"amount":"x'),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_stored_value_is_altered(engine, raw, ids, kind):
    set_state(raw, "C1", 2, MALFORMED[kind](state_of(raw, "C1", 2)))
    assert findings(engine.store) == [("C1", "altered", 2, ids["C1", 2])]


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_newest_value_with_its_index_and_head_rewritten_is_still_altered(engine, raw, ids, kind):
    rewrite_newest(raw, "C2", 2, MALFORMED[kind](state_of(raw, "C2", 2)))
    report = verify(engine.store)
    [finding] = report.findings
    assert (finding.customer_id, finding.kind, finding.version, finding.event_id) == ("C2", "altered", 2, ids["C2", 2])
    assert "stored value is malformed" in finding.detail


def turn_into_text(raw) -> None:
    """``UPDATE … SET state = replace(…)``: the stored event becomes text that is no longer its JSON."""
    with guards_off(raw):
        if raw.postgres:  # the bytea's text form (\x7b22…), stored as its bytes
            raw.execute(
                "UPDATE timeline_events SET state = convert_to(replace(state::text, '7b', '7B'), 'UTF8') "
                "WHERE originator_id = 'C1' AND originator_version = 2"
            )
        else:  # SQLite's replace() returns TEXT
            raw.execute(
                "UPDATE timeline_events SET state = replace(state, '\"', '''') "
                "WHERE originator_id = 'C1' AND originator_version = 2"
            )


def test_a_stored_event_turned_into_text_is_altered_and_verify_says_so_in_one_line(engine, raw, ids, run):
    turn_into_text(raw)
    assert findings(engine.store) == [("C1", "altered", 2, ids["C1", 2])]
    result = run("verify")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"TAMPERED customer C1: altered event at version 2 (event {ids['C1', 2]})")


@pytest.mark.parametrize(
    "args",
    [("state", "C1"), ("explain", "C1"), ("history", "C1"), ("state", "--all", "--json")],
    ids=["state", "explain", "history", "state-all"],
)
def test_a_reader_of_a_stored_event_turned_into_text_fails_in_one_line(engine, raw, ids, run, args):
    turn_into_text(raw)
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "timeline: error: stored event of customer C1 at version 2 is unreadable (not JSON): "
        "the store was changed outside the engine; run `timeline verify`"
    ]


def test_a_reader_of_a_value_no_event_model_allows_fails_in_one_line(engine, raw, ids, run):
    """The envelope is well-formed, so decoding passes; the fold fails, and the stored event is named."""
    set_state(raw, "C1", 2, MALFORMED["data-value-of-no-model"](state_of(raw, "C1", 2)))
    for args in (("state", "C1"), ("state", "--all", "--json")):
        result = run(*args)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "timeline: error: stored event of customer C1 at version 2 is unreadable (its content breaks the event "
            "model: data.amount: not a plain decimal amount: 'x1000.00'): the store was changed outside the engine; "
            "run `timeline verify`"
        ]


def test_a_corrupt_event_error_crosses_process_boundaries_whole():
    """``state --all`` folds in worker processes, which raise it to the parent by pickling."""
    error = pickle.loads(pickle.dumps(CorruptEvent("C1", 2, "not JSON")))
    assert (error.customer_id, error.version, error.reason) == ("C1", 2, "not JSON")
    assert str(error) == str(CorruptEvent("C1", 2, "not JSON"))


# --- keys ----------------------------------------------------------------------------------------


def key_of(raw, customer: str) -> bytes | None:
    [(key,)] = raw.rows("SELECT wrapped_key FROM timeline_keys WHERE customer_id = ?", (customer,))
    return key


def set_key(raw, customer: str, key: bytes | None) -> None:
    with guards_off(raw):
        raw.execute("UPDATE timeline_keys SET wrapped_key = ? WHERE customer_id = ?", (key, customer))


def test_a_deleted_data_key_is_key_missing(engine, raw, ids):
    with guards_off(raw):
        raw.execute("DELETE FROM timeline_keys WHERE customer_id = 'C1'")
    assert findings(engine.store) == [("C1", "key-missing", 1, ids["C1", 1])]
    assert findings(engine.store, wrapper=None) == [("C1", "key-missing", 1, ids["C1", 1])]


def test_a_data_key_nulled_without_an_erasure_is_key_missing(engine, raw, ids):
    set_key(raw, "C1", None)
    report = verify(engine.store, wrapper=None)
    [finding] = report.findings
    assert (finding.customer_id, finding.kind, finding.version) == ("C1", "key-missing", 1)
    assert "destroyed without a stored customer.erased" in finding.detail


def test_an_overwritten_data_key_is_key_unreadable_when_the_kek_is_given(engine, raw, ids):
    set_key(raw, "C2", os.urandom(60))
    assert findings(engine.store) == [("C2", "key-unreadable", None, None)]
    unchecked = verify(engine.store, wrapper=None)
    assert unchecked.intact and not unchecked.pii_checked


def test_a_data_key_put_back_after_erasure_is_key_not_destroyed(engine, clock, raw, ids):
    key = key_of(raw, "C2")
    emptied = withdrawal("C2", amount="5.00", at="2025-02-01T09:00:00+08:00")
    *_, outcome = engine.ingestor(clock=clock).ingest([(1, emptied), (2, erased("C2"))])
    assert outcome.status == "accepted", outcome.error
    assert verify(engine.store, wrapper=WRAPPER).intact
    set_key(raw, "C2", key)
    assert findings(engine.store, wrapper=None) == [("C2", "key-not-destroyed", 4, str(outcome.event_id))]


def test_pii_sealed_under_another_key_is_pii_unreadable(engine, clock, raw):
    [outcome] = engine.ingestor(clock=clock).ingest([(1, registered("C3"))])
    obj = orjson.loads(state_of(raw, "C3", 1))
    obj["data"]["name"] = seal(AESGCM.generate_key(bit_length=256), uuid.UUID(obj["event_id"]), "name", "Mallory")
    rewrite_newest(raw, "C3", 1, canonical_bytes(obj))
    assert findings(engine.store) == [("C3", "pii-unreadable", 1, str(outcome.event_id))]
    assert "sealed name does not open" in verify(engine.store, wrapper=WRAPPER).findings[0].detail
    assert verify(engine.store, wrapper=None).intact


def test_without_a_kek_the_command_says_pii_was_not_checked_and_creates_no_key(engine, ids, db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMELINE_KEK")}
    result = subprocess.run(
        [TIMELINE, "verify", "--db", db_url], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "verified 2 customers, 5 events: intact",
        "PII readability not checked: no key-encryption key (set TIMELINE_KEK or TIMELINE_KEK_FILE)",
    ]
    assert not (tmp_path / "timeline.kek").exists()


def test_the_command_names_key_findings_and_exits_1(engine, raw, ids, run):
    set_key(raw, "C2", None)
    result = run("verify", "--json")
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["pii_checked"] is True
    assert [(f["customer_id"], f["kind"], f["version"]) for f in body["findings"]] == [("C2", "key-missing", 1)]
