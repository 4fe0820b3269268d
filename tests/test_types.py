"""The domain's vocabularies (``timeline.domain.types``) and the typed records the folds read.

One source of truth: the event types are those of the event models, a record's fields are fields of its
model, and the explanations print the same strings as the codes they carry.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import uuid
from decimal import Decimal

import pytest

from tests.factories import deposit, event, registered, visit
from tests.test_next_change import REGISTERED, D, money_history, state, stored, text
from timeline.domain.errors import ConfigurationError
from timeline.domain.events import DATA_MODELS, PII_FIELDS
from timeline.domain.policy import load_policy
from timeline.domain.types import RECORDS, Deposit, EventType, RuleCode, Stage


def test_the_event_types_are_those_of_the_event_models():
    assert [*EventType] == [*DATA_MODELS]
    assert EventType.DEPOSIT_MADE == "deposit.made"


def test_every_record_field_is_a_non_pii_field_of_its_model():
    for kind in RECORDS:
        assert _record_fields(kind) <= set(DATA_MODELS[kind].model_fields) - PII_FIELDS[kind], kind


def _record_fields(kind: str) -> set[str]:
    """The fields of the record of ``kind``, from a record read from a full example of its data."""
    examples = {
        "customer.registered": {"branch_id": "B", "relationship_manager": "R"},
        "customer.profile_updated": {"relationship_manager": "R"},
        "deposit.made": {"account_id": "A", "amount": "1.00", "product": "demand"},
        "withdrawal.made": {"account_id": "A", "amount": "1.00"},
        "greeting.sent": {"occasion": "birthday"},
        "complaint.filed": {"complaint_id": "C"},
        "complaint.resolved": {"complaint_id": "C"},
        "referral.qualified": {"referred_customer_id": "C2"},
        "followup.scheduled": {"followup_id": "F", "due_date": "2025-01-01", "reason": "r"},
        "followup.completed": {"followup_id": "F"},
        "points.redeemed": {"points": 1, "reward": "r"},
        "correction.recorded": {"voids_event_id": str(uuid.uuid4())},
    }
    return set(type(RECORDS[kind](examples[kind]))._fields)


def test_a_record_is_read_once_with_domain_types():
    [_, made] = money_history(deposit(at=text(D), amount="50000", product="time", term_months=12))
    record = made.record
    assert record == Deposit("A1", Decimal("50000.00"), "time", 12)
    assert made.record is record


def test_the_stages_are_the_lifecycle_stages_in_rule_order():
    assert [*Stage] == ["prospect", "churned", "at_risk", "loyal", "established", "new"]


def test_tier_results_carry_their_rule_code_and_print_it_as_before():
    history = money_history(deposit(at=text(D), amount="60000.00"))
    start = state(history, D)
    assert (start.tier.rule, start.tier.pending.rule) == (RuleCode.TIER_START, RuleCode.TIER_UPGRADE)
    upgraded = state(history, D + dt.timedelta(days=7))
    explained = upgraded.explain_json()["tier_explained"]
    assert (explained["rule"], explained["changes"][0]["rule"]) == ("upgrade after hold", "upgrade after hold")


def test_a_stage_carries_its_rule_code_and_the_codes_of_the_risks_that_hold():
    filed = D + dt.timedelta(days=10)
    complaint = event(
        "complaint.filed",
        "C1",
        text(filed),
        {"complaint_id": "CP1", "category": "service", "severity": "low", "description": "queue"},
    )
    history = money_history(deposit(at=text(D)), complaint)
    stage = state(history, filed + dt.timedelta(days=200)).lifecycle
    assert (stage.stage, stage.code, stage.risks) == (
        Stage.AT_RISK,
        RuleCode.AT_RISK,
        (RuleCode.STALE_COMPLAINT, RuleCode.SILENCE),
    )
    assert stage.rule == "3. at risk (3a, 3c)"


def test_the_first_rules_of_the_lifecycle_print_their_number():
    prospect = state(stored([registered(at=text(REGISTERED))]), REGISTERED).lifecycle
    assert (prospect.code, prospect.rule) == (RuleCode.PROSPECT, "1. no deposit yet")
    history = money_history(deposit(at=text(D)), visit(at=text(D + dt.timedelta(days=100))))
    established = state(history, D + dt.timedelta(days=180)).lifecycle
    assert (established.code, established.rule) == (RuleCode.ESTABLISHED, "5. established")


def test_points_ledger_lines_carry_the_rule_that_made_them():
    history = money_history(deposit(at=text(D), amount="1000.00"))
    vested = state(history, D + dt.timedelta(days=30))
    [line] = vested.points.ledger
    assert (line.kind, line.rule, line.points) == ("vest", RuleCode.DEPOSIT_HELD, 10)
    expired = state(history, dt.datetime(2028, 1, 1, tzinfo=load_policy().zone))
    assert [(line.kind, line.rule) for line in expired.points.ledger] == [
        ("vest", RuleCode.DEPOSIT_HELD),
        ("expire", RuleCode.BUCKET_EXPIRY),
    ]


def test_tier_ids_are_policy_data_validated_when_the_policy_is_read(tmp_path):
    policy = load_policy().model_dump(mode="json")
    policy["tier"]["tiers"][1]["name"] = "mass"
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(policy), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="tier names must be distinct"):
        load_policy(str(path))


def test_a_type_whose_data_no_rule_reads_has_no_record_and_events_still_pickle():
    [registration, seen] = stored([registered(at=text(REGISTERED)), visit(at=text(D))])
    assert seen.record is None
    copy = pickle.loads(pickle.dumps(registration))
    assert (copy, copy.record) == (registration, registration.record)
