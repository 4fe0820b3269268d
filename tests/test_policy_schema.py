"""Issue 13 item 4: the policy's JSON Schema is published and in sync, and a bad policy is refused in one line.

Every refusal names the field by its path in the file and says why, the same
line wherever a policy is read (``whatif``, ``policy publish``, the API).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.factories import deposit, registered
from timeline.domain.errors import ConfigurationError
from timeline.domain.policy import load_policy, parse_policy
from timeline.domain.policy_errors import InvalidPolicy
from timeline.domain.schemas import POLICY_SCHEMA, render_schemas

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
TIMELINE = str(Path(sys.executable).with_name("timeline"))


def shipped() -> dict[str, Any]:
    return load_policy().model_dump(mode="json")


def changed(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped policy with the field at ``path`` (``tier.tiers.2.threshold``) set; ``...`` removes it."""
    policy = copy.deepcopy(base or shipped())
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target: Any = policy
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return policy


def test_the_checked_in_policy_schema_is_the_models():
    assert (SCHEMAS / POLICY_SCHEMA).read_text(encoding="utf-8") == render_schemas()[POLICY_SCHEMA], (
        "schemas/policy.schema.json is out of date: run `timeline schemas export`"
    )


def test_the_policy_schema_is_draft_2020_12_and_refuses_unknown_fields_everywhere():
    schema = json.loads(render_schemas()[POLICY_SCHEMA])
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert all(part["additionalProperties"] is False for part in schema["$defs"].values())
    assert schema["properties"]["id"]["pattern"] == "^[a-z0-9-]{1,64}$"


def test_the_shipped_policy_is_valid_under_the_schema_and_a_bad_one_is_not():
    validator = Draft202012Validator(json.loads(render_schemas()[POLICY_SCHEMA]))
    assert list(validator.iter_errors(shipped())) == []
    assert list(validator.iter_errors(changed("tier.upgrade_hold_days", -1)))
    assert list(validator.iter_errors(changed("id", "Bank_V2")))
    assert list(validator.iter_errors(changed("points.extra", 1)))


BAD = [
    (
        changed("tier.tiers.2.threshold", "70000", changed("tier.tiers.1.threshold", "80000")),
        "tier.tiers[2].threshold: 70000 is not above tier.tiers[1].threshold 80000",
    ),
    (
        changed("tier.tiers.3.threshold", "500000"),
        "tier.tiers[3].threshold: 500000 is not above tier.tiers[2].threshold 500000",
    ),
    (
        changed("tier.tiers.0.threshold", "100"),
        "tier.tiers[0].threshold: 100 is not 0 (the lowest tier holds every customer)",
    ),
    (changed("tier.tiers", []), "tier.tiers: [] is too short: at least 1 needed"),
    (
        changed("tier.tiers.1.name", "mass"),
        'tier.tiers[1].name: "mass" is also tier.tiers[0].name (tier names must be distinct)',
    ),
    (changed("tier.tiers.1.threshold", "-5"), "tier.tiers[1].threshold: -5 is negative"),
    (changed("tier.upgrade_hold_days", -1), "tier.upgrade_hold_days: -1 is negative"),
    (changed("tier.downgrade_grace_days", -90), "tier.downgrade_grace_days: -90 is negative"),
    (changed("lifecycle.churn_window_days", -1), "lifecycle.churn_window_days: -1 is negative"),
    (changed("lifecycle.silence_days", -180), "lifecycle.silence_days: -180 is negative"),
    (changed("points.deposit_hold_days", -30), "points.deposit_hold_days: -30 is negative"),
    (changed("points.expiry_years", 0), "points.expiry_years: 0 is below the least allowed, 1"),
    (changed("points.deposit_unit", "0"), "points.deposit_unit: 0 is not above 0"),
    (changed("lifecycle.drop_ratio", "1.5"), "lifecycle.drop_ratio: 1.5 is above the most allowed, 1"),
    (
        changed("lifecycle.loyal_min_tier", "gold"),
        'lifecycle.loyal_min_tier: "gold" is not a tier (one of mass, affluent, high_net_worth, private)',
    ),
    (
        changed("lifecycle.loyal_tenure_days", 100),
        "lifecycle.loyal_tenure_days: 100 is below lifecycle.established_tenure_days 180",
    ),
    (changed("points.bonus", 5), "points.bonus: unknown field (value 5)"),
    (changed("colour", "blue"), 'colour: unknown field (value "blue")'),
    (changed("lifecycle.silence_days", ...), "lifecycle.silence_days: missing: the field is required"),
    (changed("id", "Bank_V2"), 'id: "Bank_V2" does not match ^[a-z0-9-]{1,64}$'),
    (changed("id", "x" * 65), f'id: "{"x" * 65}" does not match ^[a-z0-9-]{{1,64}}$'),
    (changed("id", ""), 'id: "" does not match ^[a-z0-9-]{1,64}$'),
    (
        changed("time_zone", "Mars/Olympus"),
        'time_zone: "Mars/Olympus": not a known time zone (an IANA name, e.g. Asia/Shanghai)',
    ),
    (
        changed("points.referral", "many"),
        'points.referral: "many": input should be a valid integer, unable to parse string as an integer',
    ),
    (
        changed("points.birthday", -1, changed("tier.upgrade_hold_days", -1)),
        "tier.upgrade_hold_days: -1 is negative (and 1 more error)",
    ),
    ([1, 2], "policy: [1, 2] is not a JSON object"),
]


@pytest.mark.parametrize(("candidate", "line"), BAD, ids=[line.split(":")[0] for _, line in BAD])
def test_a_bad_candidate_is_refused_with_one_line_naming_the_field_and_the_reason(candidate, line):
    with pytest.raises(InvalidPolicy) as refused:
        parse_policy(candidate)
    assert str(refused.value) == line
    assert "\n" not in str(refused.value)


def test_a_valid_candidate_is_read_whole():
    policy = parse_policy(changed("id", "bank-2027-a", changed("tier.tiers.1.threshold", "80000")))
    assert policy.id == "bank-2027-a" and str(policy.tier.tiers[1].threshold) == "80000"


def test_a_policy_file_names_itself_in_the_line(tmp_path):
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(changed("tier.upgrade_hold_days", -7)), encoding="utf-8")
    with pytest.raises(ConfigurationError) as refused:
        load_policy(str(path))
    assert str(refused.value) == f"policy {str(path)!r} is invalid: tier.upgrade_hold_days: -7 is negative"
    path.write_text("{not json", encoding="utf-8")
    load_policy.cache_clear()
    with pytest.raises(InvalidPolicy, match=r"is not JSON: Expecting property name"):
        load_policy(str(path))


def test_whatif_refuses_a_bad_candidate_in_one_line_on_stderr_and_stores_nothing(tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(e) for e in [registered("C1"), deposit("C1", amount="60000.00")]) + "\n", encoding="utf-8"
    )
    assert subprocess.run([TIMELINE, "ingest", str(events), "--db", db], capture_output=True).returncode == 0
    before = (tmp_path / "store.db").read_bytes()
    candidate = tmp_path / "candidate.json"
    bad = changed("tier.tiers.2.threshold", "70000", changed("tier.tiers.1.threshold", "80000"))
    candidate.write_text(json.dumps(bad), encoding="utf-8")
    done = subprocess.run(
        [TIMELINE, "whatif", "--policy", str(candidate), "--db", db, "--json"], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"timeline: error: policy {str(candidate)!r} is invalid: "
        "tier.tiers[2].threshold: 70000 is not above tier.tiers[1].threshold 80000"
    ]
    assert (tmp_path / "store.db").read_bytes() == before


def test_a_policy_file_without_labels_still_loads_and_reads_its_ids():
    older = shipped()
    for level in older["tier"]["tiers"]:
        del level["label"]
    del older["lifecycle"]["stage_labels"]
    policy = parse_policy(older)
    assert policy.tier.label("high_net_worth") == "high_net_worth"
    assert policy.lifecycle.stage_labels.of("at_risk") == "at risk"
    assert load_policy().tier.label("private") == "私人银行 private banking"
    assert load_policy().tier.label("no_such_tier") == "no_such_tier"
