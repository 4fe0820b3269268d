"""POLICY §2, as a property: any input is either stored exactly as sent or rejected with nothing stored.

Hypothesis starts from valid events (the factories) and mutates them: drops
fields, adds unknown ones, swaps in values of the wrong type, naive or
non-ISO timestamps, money such as ``"1e3"``, ``12.345`` or ``1.5``, oversized
strings, bad enum values and random JSON. Each mutated event goes the way a
line of a file goes (JSON text, the engine's decoder, the ingestor). Then:

- rejected (or a duplicate): the log is exactly as before;
- accepted: exactly one new row, which reads back as the input in canonical
  form (same ids, the same instant, money as the same decimal, absent = null),
  the chain verifies, and sending the same line again is a duplicate.

Mutations that the policy says can never pass (unknown fields, naive timestamps,
more than 2 decimals, exponents, bad enums, oversized text) must be rejected.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal, InvalidOperation
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KEK
from tests.factories import deposit, event, registered, visit, withdrawal
from timeline.application.jsonl import read_line
from timeline.application.keyring import load_history
from timeline.application.ports import EventStore
from timeline.application.verify import verify
from timeline.crypto import KeyWrapper, _b64e
from timeline.engine import Engine
from timeline.store import open_store
from timeline.store.memory import MemoryEventStore

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
AT = "2025-03-01T09:00:00+08:00"
MONEY_FIELDS = {"amount"}
DATE_FIELDS = {"birth_date", "due_date"}
RAW = "\u0000raw:"  # marks a value to be written as a bare JSON literal (e.g. 1e3), not as a string
_serial = count()


def clock() -> dt.datetime:
    return NOW


def base_events(customer: str, other: str) -> dict[str, dict[str, Any]]:
    """One valid event of each kind, for a customer registered with 1,000.00 in account A1."""
    return {
        "registered": registered(other, at=AT),
        "deposit": deposit(customer, at=AT, amount="250.50"),
        "time-deposit": deposit(customer, at=AT, amount="5000", product="time", term_months=12),
        "withdrawal": withdrawal(customer, at=AT, amount="10.00"),
        "visit": visit(customer, at=AT, notes="brought a cake", channel="wechat"),
        "profile": event(
            "customer.profile_updated",
            customer,
            AT,
            {"phone": "+86 138 0000 0000", "occupation": "nurse", "key_person": True},
        ),
        "greeting": event("greeting.sent", customer, AT, {"occasion": "birthday", "channel": "sms", "gift": "tea"}),
        "complaint": event(
            "complaint.filed",
            customer,
            AT,
            {"complaint_id": "CP1", "category": "fees", "severity": "high", "description": "too high"},
        ),
        "survey": event("survey.completed", customer, AT, {"score": 4, "comment": "fine"}),
        "followup": event(
            "followup.scheduled",
            customer,
            AT,
            {"followup_id": "F1", "due_date": "2025-06-15", "reason": "funds arriving"},
        ),
        "referral": event("referral.made", customer, AT, {"referred_customer_id": other}),
        "sourced": {**visit(customer, at=AT), "source": "crm", "actor": "RM007"},
    }


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
odd_money = st.sampled_from(
    [
        RAW + "1e3",
        "1e3",
        RAW + "12.345",
        "12.345",
        RAW + "1.5",
        RAW + "1E2",
        RAW + "100",
        RAW + "12.00",
        "0",
        "0.00",
        "-5.00",
        RAW + "-0.0",
        "12.3",
        " 12.00",
        "１２",
        "NaN",
        "Infinity",
        "1_000",
        "",
        True,
        None,
        RAW + "100000000000000000000000000.00",
        "0.001",
        RAW + "0.10",
    ]
)
odd_instants = st.sampled_from(
    [
        "2025-03-01T09:00:00",
        "2025-03-01",
        "2025-03-01T09:00:00Z",
        "2025-03-01T01:00:00+00:00",
        "2025-03-01 09:00:00+08:00",
        "2025-03-01T09:00:00.123456+08:00",
        "2025-13-01T09:00:00Z",
        "yesterday",
        "2025-03-01T09:00:00+24:00",
        "2025-03-01T09:00:00+08",
        "20250301T090000+0800",
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any] | Any, list[str]]:
    """A base event (by name), its mutated form, and the mutations that the policy says must be rejected."""
    name = draw(st.sampled_from(sorted(base_events("X", "Y"))))
    obj = copy.deepcopy(base_events("@CUSTOMER", "@OTHER")[name])
    must_reject: dict[tuple[str, str], str] = {}  # (where, field) -> why; a later mutation of a field replaces it
    for _ in range(draw(st.integers(0, 3))):
        where = "data" if draw(st.booleans()) and isinstance(obj.get("data"), dict) else "envelope"
        target = obj["data"] if where == "data" else obj
        kind = draw(
            st.sampled_from(
                ["drop", "unknown", "value", "money", "instant", "oversize", "enum", "null", "wrong-type", "whole"]
            )
        )
        keys = sorted(target)
        key = draw(st.sampled_from(keys)) if keys else None
        why = None
        if kind == "whole":
            return name, draw(json_values), ["not an event"]
        if kind == "money" and isinstance(obj.get("data"), dict) and "amount" in obj["data"]:
            where, target, key = "data", obj["data"], "amount"
            target[key] = value = draw(odd_money)
            if value in (
                "1e3",
                RAW + "1e3",
                RAW + "1E2",
                "12.345",
                RAW + "12.345",
                "0",
                "0.00",
                "-5.00",
                RAW + "-0.0",
                "NaN",
                "Infinity",
                "",
                True,
                None,
                "0.001",
                "１２",
                "1_000",
            ):
                why = f"money {value!r}"
        elif kind == "instant":
            where, target, key = "envelope", obj, "occurred_at"
            target[key] = value = draw(odd_instants)
            if value in (
                "2025-03-01T09:00:00",
                "2025-03-01",
                "2025-13-01T09:00:00Z",
                "yesterday",
                "2025-03-01T09:00:00+24:00",
            ):
                why = f"instant {value!r}"
        elif kind == "enum":
            enums = [k for k in ("product", "segment", "severity", "occasion", "type") if k in target]
            enums += ["channel"] if name == "visit" and where == "data" and "channel" in target else []
            if not enums:
                continue
            key = draw(st.sampled_from(enums))
            target[key] = draw(st.sampled_from(["gold", "FAX", "", "Demand", " time"]))
            why = "bad enum"
        elif kind == "unknown":
            key = "x_" + draw(st.text("abcdefgh_", min_size=1, max_size=8))
            target[key] = draw(json_values)
            why = "unknown field"
        elif key is None:
            continue
        elif kind == "drop":
            target.pop(key)
        elif kind == "value":
            target[key] = draw(json_values)
        elif kind == "null":
            target[key] = None
        elif kind == "oversize":
            if not isinstance(target[key], str) or target[key].startswith("@"):
                continue
            target[key] = draw(st.sampled_from(["x", "客"])) * draw(st.sampled_from([4001, 5000, 70000]))
            why = f"oversized {key}"
        elif kind == "wrong-type":
            if not isinstance(target[key], str) or target[key].startswith("@"):
                continue
            target[key] = value = draw(st.sampled_from([[target[key]], {"v": target[key]}, 12, True]))
            if not (key == "amount" and value == 12):
                why = f"{key} of the wrong type"
        must_reject.pop((where, key), None)
        if why:
            must_reject[(where, key)] = why
    if not isinstance(obj.get("data"), dict):  # the data object itself was replaced or dropped
        must_reject = {k: v for k, v in must_reject.items() if k[0] == "envelope"}
    return name, obj, sorted(must_reject.values())


def _fill(value: Any, customer: str, other: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, customer, other) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, customer, other) for v in value]
    if value == "@CUSTOMER":
        return customer
    if value == "@OTHER":
        return other
    return value


def to_line(obj: Any) -> bytes:
    """JSON text as a sender writes it; RAW-marked strings become bare literals such as ``1e3``."""
    text = json.dumps(obj, ensure_ascii=False)
    for marker in {v for v in _strings(obj) if v.startswith(RAW)}:
        text = text.replace(json.dumps(marker, ensure_ascii=False), marker[len(RAW) :])
    return text.encode() + b"\n"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def same_value(field: str, sent: Any, stored: Any) -> bool:
    if field in MONEY_FIELDS:
        try:
            return Decimal(str(sent)) == Decimal(stored) and stored == f"{Decimal(stored):.2f}"
        except InvalidOperation:
            return False
    if field in DATE_FIELDS:
        return dt.date.fromisoformat(str(sent)).isoformat() == stored
    return type(sent) is type(stored) and sent == stored


def assert_stored_exactly(sent: dict[str, Any], stored) -> None:
    if "event_id" in sent and sent["event_id"] is not None:
        assert stored.event_id == uuid.UUID(str(sent["event_id"]))
    assert stored.type == sent["type"]
    assert stored.customer_id == sent["customer_id"]
    assert stored.schema_version == sent.get("schema_version", 1)
    sent_at = dt.datetime.fromisoformat(sent["occurred_at"])
    assert sent_at.tzinfo is not None, "a naive timestamp was stored"
    assert stored.occurred_at == sent_at
    assert stored.recorded_at == NOW
    assert (stored.source, stored.actor) == (sent.get("source"), sent.get("actor"))
    sent_data = {k: v for k, v in sent["data"].items() if v is not None}
    assert set(stored.data) == set(sent_data)
    for field, value in sent_data.items():
        assert same_value(field, value, stored.data[field]), (field, value, stored.data[field])


class Harness:
    """One store for a whole property run; each example gets customers of its own."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.engine = Engine(store, KeyWrapper(KEK))

    def fresh_customer(self) -> tuple[str, str]:
        n = next(_serial)
        customer, other = f"P{n}", f"Q{n}"
        out = list(
            self.engine.ingestor(clock=clock).ingest(
                [(1, registered(customer)), (2, deposit(customer, amount="1000.00"))]
            )
        )
        assert [o.status for o in out] == ["accepted", "accepted"]
        return customer, other

    def check(self, example: tuple[str, Any, list[str]]) -> None:
        name, template, must_reject = example
        customer, other = self.fresh_customer()
        obj = _fill(template, customer, other)
        line = to_line(obj)
        before = self.store.read_log(0, 1_000_000)
        head = self.store.head_position()
        decoded = read_line(line)  # one line, not a whole input: a JSON array is this line's to reject
        [outcome] = list(self.engine.ingestor(clock=clock).ingest([(1, decoded)]))
        after = self.store.read_log(head, 10)
        if outcome.status != "accepted":
            assert outcome.status == "rejected" and outcome.error, outcome
            assert after == [] and self.store.read_log(0, 1_000_000) == before, "a rejected event changed the log"
            return
        assert must_reject == [], f"accepted although {must_reject}: {line[:300]!r}"
        assert len(after) == 1 and after[0].position == outcome.position
        [stored] = [
            e
            for e in load_history(self.store, self.engine.keyring(), obj["customer_id"])
            if e.event_id == outcome.event_id
        ]
        assert_stored_exactly(decoded, stored)
        assert verify(self.store, obj["customer_id"]).intact
        if decoded.get("event_id") is not None:
            again = read_line(line)
            [repeat] = list(self.engine.ingestor(clock=clock).ingest([(1, again)]))
            assert repeat.status == "duplicate", repeat
            assert self.store.head_position() == outcome.position

    def close(self) -> None:
        self.store.close()


@pytest.fixture(scope="module")
def memory_harness():
    harness = Harness(MemoryEventStore())
    yield harness
    harness.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=mutated())
def test_every_input_is_stored_exactly_or_rejected_with_nothing_stored_in_memory(memory_harness, example):
    memory_harness.check(example)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(example=mutated())
def test_every_input_is_stored_exactly_or_rejected_with_nothing_stored_postgres(pg_url, example):
    harness = Harness(open_store(pg_url))
    try:
        harness.check(example)
    finally:
        harness.close()


@pytest.mark.parametrize(
    ("name", "mutation"),
    [
        ("deposit", {"amount": RAW + "1e3"}),
        ("deposit", {"amount": RAW + "12.345"}),
        ("deposit", {"amount": "12.345"}),
        ("deposit", {"amount": "1e3"}),
        ("withdrawal", {"amount": RAW + "-0.0"}),
        ("visit", {"occurred_at": "2025-03-01T09:00:00"}),
        pytest.param(
            "visit",
            {"occurred_at": RAW + "1740790800"},
        ),
        pytest.param(
            "visit",
            {"occurred_at": RAW + "1740790800.5"},
        ),
        ("survey", {"score": RAW + "4.0"}),
        ("survey", {"score": True}),
        ("profile", {"key_person": "yes"}),
        ("time-deposit", {"term_months": "12"}),
        pytest.param(
            "followup",
            {"due_date": "2025-06-15T00:00:00Z"},
        ),
        ("registered", {"birth_date": RAW + "19800502"}),
        ("registered", {"birth_date": "1980-05-02T00:00:00Z"}),
        ("visit", {"purpose": RAW + "12.5"}),
        pytest.param("visit", {"purpose": RAW + "1e3"}),
        pytest.param("complaint", {"category": RAW + "1e+16"}),
    ],
)
def test_known_bad_values_are_always_rejected(engine, name, mutation):
    """The examples the property must never accept, every run."""
    harness = Harness(engine.store)
    template = copy.deepcopy(base_events("@CUSTOMER", "@OTHER")[name])
    for key, value in mutation.items():
        (template if key in template else template["data"])[key] = value
    harness.check((name, template, [f"{mutation}"]))


@pytest.mark.parametrize(
    ("name", "mutation"),
    [
        ("deposit", {"amount": RAW + "1.5"}),
        ("deposit", {"amount": RAW + "100"}),
        ("deposit", {"amount": "12.3"}),
        ("visit", {"occurred_at": "2025-03-01T01:00:00Z"}),
        ("visit", {"notes": None}),
        ("sourced", {}),
        ("registered", {"name": "客" * 200}),
    ],
)
def test_lenient_but_valid_forms_are_stored_canonically(engine, name, mutation):
    harness = Harness(engine.store)
    template = copy.deepcopy(base_events("@CUSTOMER", "@OTHER")[name])
    for key, value in mutation.items():
        (template if key in template else template["data"])[key] = value
    head = engine.store.head_position()
    harness.check((name, template, []))
    assert engine.store.head_position() == head + 3, "registration and deposit of the example, then the event"


# --- the command line, on bad input -------------------------------------------------------------
# test_cli.py covers: a file with a non-UTF-8 byte, one malformed line among good ones, `verify` on an
# unreachable server, an unsupported URL. These cover the rest of what a user can get wrong.

TIMELINE = str(Path(sys.executable).with_name("timeline"))


@pytest.fixture
def cli(tmp_path, sqlite_url):
    env = {**os.environ, "TIMELINE_DB": sqlite_url, "TIMELINE_KEK": _b64e(KEK)}

    def run(*args: str, stdin: bytes | None = None, **extra_env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [TIMELINE, *args], input=stdin, capture_output=True, env={**env, **extra_env}, cwd=tmp_path, timeout=120
        )
        stderr = result.stderr.decode("utf-8")
        assert "Traceback" not in stderr, stderr
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode("utf-8"), stderr)

    return run


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Exit 2 and exactly one line on stderr, ``timeline: error: …``; return what follows the prefix."""
    assert result.returncode == 2, result
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("timeline: error: "), line
    return line[len("timeline: error: ") :]


def reject_lines(result: subprocess.CompletedProcess) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Ingest's stderr: one JSON object per rejected line, then the summary."""
    *rejects, summary = [json.loads(line) for line in result.stderr.splitlines()]
    return rejects, summary["summary"]


def test_malformed_lines_are_each_rejected_by_line_number_and_the_good_ones_stored(cli, tmp_path):
    good = json.dumps(registered(), ensure_ascii=False).encode()
    lines = [
        good,
        b"{oops",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"a": 1, "a": 2}',
        b"NaN",
        b"[" * 100_000 + b"]" * 100_000,
        b"\x00\x01\x02",
        json.dumps(visit()).encode()[:-1],  # truncated object
        b'{"type": "visit.recorded"} trailing',
        b"   ",  # blank lines are skipped, not rejected
        json.dumps(visit()).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = cli("ingest", str(path))
    assert result.returncode == 1, result.stderr
    rejects, summary = reject_lines(result)
    assert summary == {"accepted": 2, "duplicate": 0, "rejected": 9}
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert all(r["error"] and "\n" not in r["error"] for r in rejects)
    assert "malformed JSON" in rejects[0]["error"]
    assert "must be a JSON object" in rejects[1]["error"]
    assert "duplicate key 'a'" in rejects[3]["error"]


def test_a_line_longer_than_the_limit_is_rejected_alone(cli, tmp_path):
    huge = json.dumps(visit(notes="x" * (1 << 20))).encode()
    path = tmp_path / "huge.jsonl"
    path.write_bytes(json.dumps(registered()).encode() + b"\n" + huge + b"\n" + json.dumps(visit()).encode() + b"\n")
    result = cli("ingest", str(path))
    assert result.returncode == 1
    rejects, summary = reject_lines(result)
    assert summary == {"accepted": 2, "duplicate": 0, "rejected": 1}
    assert rejects[0]["line"] == 2 and "longer than" in rejects[0]["error"]


def test_standard_input_that_is_not_utf8_is_rejected_line_by_line(cli):
    stdin = (
        json.dumps(registered(), ensure_ascii=False).encode()
        + b"\n"
        + "é\n".encode("latin-1")
        + json.dumps(visit()).encode()
        + b"\n"
    )
    result = cli("ingest", "-", stdin=stdin)
    assert result.returncode == 1
    rejects, summary = reject_lines(result)
    assert summary == {"accepted": 2, "duplicate": 0, "rejected": 1}
    assert rejects == [{"line": 2, "event_id": None, "status": "rejected", "error": "line is not UTF-8"}]


def test_a_file_ending_in_a_cut_utf8_sequence_is_refused_whole(cli, tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_bytes(json.dumps(registered(), ensure_ascii=False).encode() + b"\n" + "客".encode()[:2])
    assert "is not UTF-8 (truncated sequence at its end)" in one_error_line(cli("ingest", str(path)))
    assert one_error_line(cli("verify", "--json")).startswith("no timeline store at"), "nothing stored, nothing created"


def test_a_missing_input_file_or_a_directory_is_one_line(cli, tmp_path):
    assert one_error_line(cli("ingest", str(tmp_path / "nope.jsonl"))) == f"no such file: {tmp_path / 'nope.jsonl'}"
    assert one_error_line(cli("ingest", str(tmp_path))) == f"no such file: {tmp_path}"


def test_an_empty_file_ingests_nothing_and_exits_0(cli, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = cli("ingest", str(path))
    assert result.returncode == 0, result.stderr
    assert reject_lines(result) == ([], {"accepted": 0, "duplicate": 0, "rejected": 0})


@pytest.mark.parametrize(
    ("url", "command"),
    [
        ("postgresql://postgres@127.0.0.1:1/x", ["ingest", "-"]),
        ("postgresql://postgres@127.0.0.1:1/x", ["history", "C1"]),
        ("postgresql://postgres@127.0.0.1:5432/timeline_no_such_database", ["ingest", "-"]),
        ("postgresql://nobody_at_all@127.0.0.1:5432/postgres", ["ingest", "-"]),
    ],
    ids=["closed-port-ingest", "closed-port-history", "no-such-database", "no-such-role"],
)
def test_an_unusable_postgres_url_is_one_clear_line(cli, url, command):
    """(``verify`` on a closed port is in test_cli.py.)"""
    message = one_error_line(cli(*command, "--db", url, stdin=json.dumps(registered()).encode()))
    assert message.startswith("cannot reach PostgreSQL at 127.0.0.1:"), message
    assert "start one with" in message


def test_a_sqlite_path_that_cannot_be_opened_is_one_clear_line(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory, not a database")
    message = one_error_line(cli("verify", "--db", f"sqlite:///{blocker}/timeline.db"))
    assert message == f"no timeline store at sqlite:///{blocker}/timeline.db"
    message = one_error_line(cli("ingest", "-", "--db", f"sqlite:///{blocker}/timeline.db", stdin=b""))
    assert message.startswith(f"cannot open SQLite database {blocker}/timeline.db: unable to open database file")
    message = one_error_line(cli("ingest", "-", "--db", f"sqlite:///{blocker}", stdin=b""))
    assert message == f"cannot open SQLite database {blocker}: file is not a database"


@pytest.mark.parametrize(
    ("kek", "expected"),
    [("not base64 !!", "TIMELINE_KEK is not valid base64"), (_b64e(b"short"), "TIMELINE_KEK must decode to 32 bytes")],
)
def test_an_unusable_kek_is_one_clear_line(cli, kek, expected):
    assert cli("init").returncode == 0
    run = cli("ingest", "-", stdin=json.dumps(registered()).encode(), TIMELINE_KEK=kek)
    assert one_error_line(run).startswith(expected)
    assert cli("state", "--all", "--json", TIMELINE_KEK=kek).returncode == 0, "reading without decrypting needs no KEK"
    assert one_error_line(cli("verify", TIMELINE_KEK=kek)).startswith(expected), "verify opens PII with a KEK given"


def test_without_a_kek_a_key_file_is_made_for_sqlite_only(cli, pg_url, tmp_path):
    env = {"TIMELINE_KEK": "", "TIMELINE_KEK_FILE": str(tmp_path / "k" / "timeline.kek")}
    message = one_error_line(cli("ingest", "-", "--db", pg_url, stdin=json.dumps(registered()).encode(), **env))
    assert message.startswith("no key-encryption key: set TIMELINE_KEK")
    assert not (tmp_path / "k").exists()
    assert one_error_line(cli("state", "--all", "--json", "--db", pg_url, **env)).startswith("no timeline store at")
    assert cli("ingest", "-", stdin=json.dumps(registered()).encode(), **env).returncode == 0
    assert (tmp_path / "k" / "timeline.kek").exists()


def test_the_wrong_kek_for_a_store_is_one_clear_line(cli):
    assert cli("ingest", "-", stdin=json.dumps(registered()).encode()).returncode == 0
    message = one_error_line(cli("history", "C1", TIMELINE_KEK=_b64e(bytes(32))))
    assert message == "TIMELINE_KEK does not match the key-encryption key this store was created with"
