"""The policy stream of a store (issue 13): published versions kept, chained and verified on every backend,
and ``timeline policy publish|list`` on an embedded store."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import deposit, registered
from tests.support.backends import every_backend, sql_backends
from tests.test_immutability import Raw
from tests.test_tamper_evidence import guards_off
from timeline.application.policy_store import PolicyStream
from timeline.application.states import StateReader
from timeline.application.verify import verify
from timeline.domain.policy import Policy, load_policy
from timeline.domain.policy_errors import InvalidPolicy
from timeline.domain.policy_versions import PolicyTimeline

BASE = load_policy()
TIMELINE = str(Path(sys.executable).with_name("timeline"))
B = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
K = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def variant(policy_id: str, threshold: str = "80000") -> Policy:
    data = BASE.model_dump(mode="json")
    data["id"] = policy_id
    data["tier"]["tiers"][1]["threshold"] = threshold
    return Policy.model_validate(data)


@every_backend
def test_published_versions_are_read_back_in_order_as_one_timeline(store):
    stream = PolicyStream(store, BASE)
    stream.publish(variant("v2"), B, K)
    stream.publish(variant("v3", "90000"), B + dt.timedelta(days=30), K + dt.timedelta(seconds=1))

    again = PolicyStream(store, BASE)
    assert [e.seq for e in again.entries()] == [1, 2]
    versions = again.timeline()
    assert [v.id for v in versions.versions] == [BASE.id, "v2", "v3"]
    assert versions.at(B).id == "v2" and versions.at(B - dt.timedelta(microseconds=1)) is BASE
    assert versions.known_at(K) == PolicyTimeline(versions.versions[:2])
    assert verify(store).policy_findings == []


@every_backend
def test_a_publish_after_another_reads_the_stream_again_and_takes_the_next_place(store):
    late, early = PolicyStream(store, BASE), PolicyStream(store, BASE)
    late.entries()
    early.publish(variant("first"), B, K)
    late.publish(variant("second"), B, K + dt.timedelta(seconds=1))
    entries = PolicyStream(store, BASE).entries()
    assert [(e.seq, e.version.id) for e in entries] == [(1, "first"), (2, "second")]
    assert entries[1].prev_hash == entries[0].hash


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("time_zone", "Europe/London", 'time_zone: "Europe/London" differs from "Asia/Shanghai" of bank-default-v1'),
        ("currency", "USD", 'currency: "USD" differs from "CNY" of bank-default-v1'),
        ("tier-name", "gold", 'tier.tiers[1].name: "gold" differs from "affluent" of bank-default-v1'),
    ],
)
def test_a_version_that_changes_calendar_money_or_tier_names_is_refused_as_what_if_refuses_it(
    store, field, value, refusal
):
    data = variant("v2").model_dump(mode="json")
    if field == "tier-name":
        data["tier"]["tiers"][1]["name"] = data["lifecycle"]["loyal_min_tier"] = value
    else:
        data[field] = value
    stream = PolicyStream(store, BASE)
    with pytest.raises(InvalidPolicy) as refused:
        stream.publish(Policy.model_validate(data), B, K)
    assert str(refused.value) == f"{refusal} (versions keep it)"
    assert PolicyStream(store, BASE).entries() == []


@sql_backends
def test_an_altered_or_removed_entry_is_named_by_verify(db_url, store):
    stream = PolicyStream(store, BASE)
    for n in range(1, 4):
        stream.publish(variant(f"v{n}", str(60000 + n)), B + dt.timedelta(days=n), K)
    raw = Raw(db_url)
    try:
        name = "policy-stream/000002"
        [(value,)] = raw.rows("SELECT value FROM timeline_meta WHERE name = ?", (name,))
        with guards_off(raw):
            raw.execute("UPDATE timeline_meta SET value = ? WHERE name = ?", (value.replace("60002", "60009"), name))
        [finding] = verify(store).policy_findings
        assert (finding.seq, finding.kind) == (3, "altered")
        with guards_off(raw):
            raw.execute("DELETE FROM timeline_meta WHERE name = ?", (name,))
        [finding] = verify(store).policy_findings
        assert (finding.seq, finding.kind) == (2, "missing")
        assert not verify(store).intact
    finally:
        raw.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIMELINE, *args], capture_output=True, text=True, timeout=120)


def test_policy_publish_and_list_on_the_command_line(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    events = tmp_path / "events.jsonl"
    registration = registered(at="2025-01-01T09:00:00+08:00")
    money = deposit(at="2025-01-02T09:00:00+08:00", amount="60000.00")
    events.write_text("\n".join(json.dumps(e) for e in (registration, money)) + "\n", encoding="utf-8")
    assert run("ingest", str(events), "--db", db).returncode == 0
    candidate = tmp_path / "v2.json"
    candidate.write_text(variant("bank-v2").model_dump_json(), encoding="utf-8")

    published = run("policy", "publish", str(candidate), "--effective-from", "2025-03-01", "--db", db)
    assert published.returncode == 0, published.stderr
    assert "of 1 customer change" in published.stdout
    again = run("policy", "publish", str(candidate), "--effective-from", "2025-03-01", "--db", db)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already published" in again.stderr

    listed = [json.loads(line) for line in run("policy", "list", "--json", "--db", db).stdout.splitlines()]
    assert [v["id"] for v in listed] == [BASE.id, "bank-v2"]
    assert listed[1]["effective_from"] == "2025-02-28T16:00:00Z"  # the start of the day in +08:00
    before = run("policy", "list", "--json", "--known-at", "2025-01-01", "--db", db).stdout.splitlines()
    assert [json.loads(line)["id"] for line in before] == [BASE.id]

    state = json.loads(run("state", "C1", "--as-of", "2025-03-01", "--json", "--db", db).stdout)
    assert (state["policy"], state["tier"]) == ("bank-v2", "affluent")  # pending under v2's grace period
    assert run("verify", "--db", db).returncode == 0


@pytest.mark.backends("sqlite")
def test_state_all_in_worker_processes_answers_under_the_published_versions(branch):
    for n in range(1, 5):
        branch.accept(registered(f"C{n}", at="2025-01-01T09:00:00+08:00"))
        branch.accept(deposit(f"C{n}", at="2025-01-02T09:00:00+08:00", amount=f"{n * 30000}.00"))
    PolicyStream(branch.engine.store, BASE).publish(variant("v2"), B, K)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    reader = StateReader(branch.engine.store, BASE)
    here = [s.to_json() for s in reader.all_states(now, now, workers=1)]
    assert [s.to_json() for s in reader.all_states(now, now, workers=2)] == here
    assert [(s["policy"], s["tier"]) for s in here] == [
        ("v2", "mass"),
        ("v2", "mass"),
        ("v2", "affluent"),
        ("v2", "affluent"),
    ]
