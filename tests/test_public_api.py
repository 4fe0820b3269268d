"""The Python API: ``timeline.open(url)`` and what the CLI does, as values; loaded only when used."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import timeline
from tests.factories import correction, deposit, registered, visit
from timeline.crypto import new_kek_text
from timeline.domain.errors import NoStore, TimelineError

ROOT = Path(__file__).resolve().parents[1]
KEK = new_kek_text()


@pytest.fixture
def tl(sqlite_url):
    with timeline.open(sqlite_url, kek=KEK) as opened:
        yield opened


def test_importing_the_domain_does_not_load_the_api_or_the_engine():
    code = "import json, sys, timeline.domain.events; print(json.dumps([m for m in sys.modules if 'timeline' in m]))"
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert "timeline.api" not in loaded and "timeline.engine" not in loaded, loaded


def test_the_version_is_the_packages():
    assert timeline.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        timeline.nothing_here  # noqa: B018


def test_ingest_event_dicts_then_ask_state_explain_and_history(tl):
    report = tl.ingest([registered(), deposit(amount="100000.00"), visit()])
    assert (report.accepted, report.duplicate, report.rejected, report.rejects) == (3, 0, 0, ())
    state = tl.state("C1", as_of="2025-03-01")
    assert (state.tier.tier, str(state.aum)) == ("affluent", "100000.00")
    assert state.as_of == dt.datetime(2025, 3, 1, 15, 59, 59, 999999, tzinfo=dt.UTC), "a date is its end in Shanghai"
    assert tl.state("C1", as_of=dt.date(2025, 3, 1)).as_of == state.as_of
    assert tl.explain("C1", as_of="2025-03-01")["tier_explained"]["rule"] == state.tier.rule
    events = tl.history("C1")
    assert [e.type for e in events] == ["customer.registered", "deposit.made", "visit.recorded"]
    assert events[0].data["name"] == "王小明", "personal data opened with the key"
    assert [s.customer_id for s in tl.states(as_of="2025-03-01")] == ["C1"]


def test_ingest_a_file_reports_each_reject_with_why(tl, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(registered()) + "\n{oops\n", encoding="utf-8")
    report = tl.ingest(path)
    assert (report.accepted, report.rejected) == (1, 1)
    [reject] = report.rejects
    assert reject.line == 2 and "malformed JSON" in reject.error


def test_verify_says_intact_and_checks_the_keys(tl):
    mistaken = deposit()
    tl.ingest([registered(), mistaken, correction(mistaken["event_id"])])
    report = tl.verify()
    assert (report.intact, report.customers, report.events, report.pii_checked) == (True, 1, 3, True)


def test_a_naive_datetime_is_refused(tl):
    tl.ingest([registered()])
    with pytest.raises(TimelineError, match="needs a time zone"):
        tl.state("C1", as_of=dt.datetime(2025, 3, 1, 12, 0))


def test_open_without_create_refuses_a_missing_store(tmp_path):
    with pytest.raises(NoStore):
        timeline.open(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()


def test_settings_come_from_the_environment_unless_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TIMELINE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("TIMELINE_KEK", KEK)
    with timeline.open() as tl:
        tl.ingest([registered()])
    with timeline.open(f"sqlite:///{tmp_path / 'env.db'}", kek=bytes(32)) as other, pytest.raises(TimelineError):
        other.history("C1")  # not the key the store was made with
