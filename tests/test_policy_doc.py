"""docs/POLICY.md: its tables are the shipped policy's, and every rule an explanation names has a section."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from timeline.cli.report import render_explanation
from timeline.domain import rule_docs
from timeline.domain.events import EVENT_MODELS
from timeline.domain.policy import Policy, load_policy
from timeline.domain.policy_doc import PARAMETERS, REGENERATE, TABLES, main, parameter_keys, regenerate, render
from timeline.domain.recorded import RecordedEvent
from timeline.projections.lifecycle import StageResult
from timeline.projections.points import LedgerLine
from timeline.projections.state import customer_state
from timeline.projections.tier import TierChange, TierResult

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / rule_docs.DOCUMENT
PROJECTIONS = ROOT / "projections"
_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


def test_the_tables_are_those_of_the_shipped_policy() -> None:
    text = _text()
    assert regenerate(text, load_policy()) == text, f"{rule_docs.DOCUMENT} is out of date: run `{REGENERATE}`"


def test_every_policy_parameter_is_described() -> None:
    assert sorted(parameter_keys()) == sorted(PARAMETERS)


def test_a_changed_policy_changes_the_tables() -> None:
    shipped = load_policy()
    raw = shipped.model_dump(mode="json")
    raw["tier"]["upgrade_hold_days"] = 1
    raw["lifecycle"]["drop_ratio"] = "0.25"
    raw["referral"]["min_first_deposit"] = "12345.50"
    changed = Policy.model_validate(raw)
    assert "| 1 day | `tier.upgrade_hold_days` |" in render(changed, "tier")
    assert "| 25% | `lifecycle.drop_ratio` |" in render(changed, "lifecycle")
    assert "| 12,345.50 CNY | `referral.min_first_deposit` |" in render(changed, "referral")
    assert regenerate(_text(), changed) != _text()


def test_each_table_is_marked_exactly_once() -> None:
    text = _text()
    assert set(TABLES) == set(re.findall(r"<!-- policy-table: (\w+) -->", text))
    twice = text + "\n<!-- policy-table: tier -->\n<!-- /policy-table -->\n"
    with pytest.raises(ValueError, match="exactly once; not so: tier"):
        regenerate(twice, load_policy())


def test_a_marker_naming_no_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown policy table marker.*: bogus"):
        regenerate(_text() + "\n<!-- policy-table: bogus -->\n<!-- /policy-table -->\n", load_policy())


def test_the_command_rewrites_a_stale_document_and_check_says_what_to_run(tmp_path, capsys) -> None:
    stale = tmp_path / "POLICY.md"
    stale.write_text(_text().replace("| 7 days |", "| 8 days |"), encoding="utf-8")
    assert main([str(stale), "--check"]) == 1
    assert f"run `{REGENERATE} {stale}`" in capsys.readouterr().err
    assert main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == _text()
    assert main([str(stale), "--check"]) == 0


def test_the_command_reports_a_missing_document_in_one_line(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "absent.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no such file: {tmp_path / 'absent.md'}" in err


def test_every_anchor_is_one_heading_of_the_document() -> None:
    found = [m.group(1) for line in _text().splitlines() if line.startswith("#") for m in _ANCHOR.finditer(line)]
    assert len(found) == len(set(found)), "an anchor is used twice"
    assert set(found) == rule_docs.ANCHORS
    assert len(_ANCHOR.findall(_text())) == len(found), "an anchor outside a heading"


def test_links_stay_inside_the_repository_and_reach_their_target() -> None:
    for target in _LINK.findall(_text()):
        assert "://" not in target, f"{target} points outside the repository"
        path, _, fragment = target.partition("#")
        if path:
            resolved = (DOCUMENT.parent / path).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{target} is not a file of the repository"
        else:
            assert fragment in rule_docs.ANCHORS, f"#{fragment} is no section"
    assert "shared/" not in _text()


def test_every_event_type_is_documented() -> None:
    text = _text()
    assert [t for t in EVENT_MODELS if f"| `{t}` |" not in text] == []


def _emitted_rule_codes() -> set[str]:
    """Every rule code the projections can put in a result, and every rule text they print.

    The codes are the members of ``RuleCode`` (when the domain has it); the texts are read from the
    projections' source: the literal ``rule`` of each tier and stage result, the ``kind`` of each
    ledger line, and the numbered at-risk criteria (``3a. …``) of the lifecycle rules.
    """
    try:
        from timeline.domain.types import RuleCode
    except ImportError:
        members: set[str] = set()
    else:
        members = {str(code) for code in RuleCode}
    return members | _printed_rules()


def _printed_rules() -> set[str]:
    fields = {cls.__name__: [f.name for f in dataclasses.fields(cls)] for cls in (TierChange, TierResult, StageResult)}
    fields["LedgerLine"] = [f.name for f in dataclasses.fields(LedgerLine)]
    codes: set[str] = set()
    for module in ("tier.py", "lifecycle.py", "points.py"):
        tree = ast.parse((PROJECTIONS / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in fields:
                name = "kind" if node.func.id == "LedgerLine" else "rule"
                index = fields[node.func.id].index(name)
                given = [k.value for k in node.keywords if k.arg == name]
                value = given[0] if given else node.args[index] if index < len(node.args) else None
                if (text := _leading_text(value)) is not None:
                    codes.add(text)
            elif module == "lifecycle.py" and (text := _leading_text(node)) and re.match(r"\d[a-z]\. ", text):
                codes.add(text)
    return codes


def _leading_text(node: ast.AST | None) -> str | None:
    """The literal text a string or f-string starts with (None for anything else)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def test_every_rule_code_the_projections_emit_has_a_section() -> None:
    codes = _emitted_rule_codes()
    assert len(codes) >= 15, f"too few rule codes found: {sorted(codes)}"
    anchors = set(_ANCHOR.findall(_text()))
    assert {code: rule_docs.anchor(code) for code in codes if rule_docs.anchor(code) not in anchors} == {}


@pytest.mark.parametrize(
    ("printed", "link"),
    [
        ("upgrade after hold", "docs/POLICY.md#tier-upgrade"),
        ("downgrade after grace period", "docs/POLICY.md#tier-downgrade"),
        ("registered", "docs/POLICY.md#tier-registered"),
        ("2. AUM 0 for 90 days", "docs/POLICY.md#lifecycle-2"),
        ("3. at risk (3a, 3b)", "docs/POLICY.md#lifecycle-3"),
        ("3a. complaint C1 filed 2025-01-01T08:00:00+08:00 unresolved for 30+ days", "docs/POLICY.md#lifecycle-3a"),
        ("6. new", "docs/POLICY.md#lifecycle-6"),
        ("vest", "docs/POLICY.md#points-vest"),
        ("lifecycle-3c", "docs/POLICY.md#lifecycle-3c"),
    ],
)
def test_a_printed_rule_links_to_its_section(printed: str, link: str) -> None:
    assert rule_docs.link(printed) == link


@pytest.mark.parametrize("unknown", ["7. retired", "3d", "upgrade", ""])
def test_a_rule_without_a_section_is_an_error_naming_it(unknown: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"no section of docs/POLICY.md states a rule {unknown!r}")):
        rule_docs.anchor(unknown)


def _recorded(position: int, kind: str, at: dt.datetime, data: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(position, "C1", position, uuid.uuid4(), kind, 1, at, at, None, None, data, "", "")


def test_explain_links_each_rule_it_names_to_its_section() -> None:
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    registration = {"branch_id": "B1", "relationship_manager": "RM1", "segment": "individual"}
    history = [
        _recorded(1, "customer.registered", start, registration),
        _recorded(2, "deposit.made", start, {"account_id": "A1", "amount": "60000.00", "product": "demand"}),
    ]
    state = customer_state(history, load_policy(), start + dt.timedelta(days=10), start + dt.timedelta(days=10))
    console = Console(width=240, record=True)
    console.print(render_explanation(state, load_policy().zone))
    text = console.export_text()
    assert "upgrade after hold (docs/POLICY.md#tier-upgrade)" in text
    assert "6. new (docs/POLICY.md#lifecycle-6)" in text
    why = state.explain_json()
    assert why["tier_explained"]["see"] == why["tier_explained"]["changes"][0]["see"] == "docs/POLICY.md#tier-upgrade"
    assert why["lifecycle_explained"]["see"] == "docs/POLICY.md#lifecycle-6"
