"""Configuration: every ``TIMELINE_*`` variable in one settings object, read once at the edge and documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from timeline.crypto import KekSource
from timeline.domain.errors import ConfigurationError
from timeline.settings import Settings
from timeline.store import StoreUrl

ROOT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"\bTIMELINE_[A-Z_]+\b")


@pytest.fixture
def env(monkeypatch):
    """No ``TIMELINE_*`` variable set but those a test sets."""
    for name in Settings.variables():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_when_nothing_is_set(env):
    s = Settings()
    assert (s.db, s.policy) == ("sqlite:///timeline.db", "bank-default-v1")
    assert (s.kafka, s.topic) == ("localhost:9092", "customer-events")
    assert s.kek_source == KekSource(None, None)
    assert s.read_model_url() == s.db, "the read models default to the store's database"


def test_every_variable_is_read(env):
    values = {
        "TIMELINE_DB": "postgresql://u@h/db",
        "TIMELINE_KEK": "a-key",
        "TIMELINE_KEK_FILE": "/keys/branch.kek",
        "TIMELINE_POLICY": "my-policy.json",
        "TIMELINE_READ_DB": "postgresql://u@h/views",
        "TIMELINE_KAFKA": "kafka:9093",
        "TIMELINE_TOPIC": "events",
        "TIMELINE_LOG_JSON": "1",
    }
    assert set(values) == set(Settings.variables())
    for name, value in values.items():
        env.setenv(name, value)
    s = Settings()
    assert (s.db, s.policy, s.read_db, s.kafka, s.topic) == (
        "postgresql://u@h/db",
        "my-policy.json",
        "postgresql://u@h/views",
        "kafka:9093",
        "events",
    )
    assert s.kek_source == KekSource("a-key", Path("/keys/branch.kek"))
    assert s.log_json is True
    assert "a-key" not in repr(s), "the key never shows in a repr or a log line"


def test_an_empty_variable_counts_as_unset(env):
    env.setenv("TIMELINE_DB", "")
    env.setenv("TIMELINE_KEK", "")
    s = Settings()
    assert s.db == "sqlite:///timeline.db" and s.kek_source.text is None


def test_an_option_beats_its_variable(env):
    env.setenv("TIMELINE_DB", "sqlite:///from-env.db")
    env.setenv("TIMELINE_POLICY", "from-env")
    s = Settings()
    assert s.store_url("sqlite:///given.db") == "sqlite:///given.db" and s.store_url(None) == "sqlite:///from-env.db"
    assert s.policy_name("given") == "given" and s.policy_name(None) == "from-env"
    assert s.read_model_url("postgresql://given") == "postgresql://given"


def test_every_variable_the_code_knows_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = {name for line in section.splitlines() if line.startswith("| `") for name in VARIABLE.findall(line)}
    in_code = {
        name
        for folder in ("src/timeline", "consumers")
        for path in (ROOT / folder).rglob("*.py")
        for name in VARIABLE.findall(path.read_text(encoding="utf-8"))
    }
    assert set(Settings.variables()) <= documented
    assert in_code <= documented, in_code - documented


def test_only_the_interfaces_read_the_environment():
    """Below the CLI and the Python API, configuration arrives as values (the settings are read once)."""
    edge = {ROOT / "src/timeline/settings.py", *(ROOT / "src/timeline/cli").rglob("*.py")}
    readers = [
        path.relative_to(ROOT)
        for folder in ("src/timeline", "consumers", "projections")
        for path in (ROOT / folder).rglob("*.py")
        if path not in edge and re.search(r"environ\.get|environ\[|getenv\(", path.read_text(encoding="utf-8"))
    ]
    assert readers == []


@pytest.mark.parametrize(
    ("url", "postgres"),
    [("sqlite:///timeline.db", False), ("postgresql://u@h:5432/db", True), ("postgres://u@h/db", True)],
)
def test_a_store_url_is_sqlite_with_a_path_or_postgresql(url, postgres):
    parsed = StoreUrl.parse(url)
    assert parsed.is_postgres is postgres and parsed.embedded is not postgres
    if not postgres:
        assert parsed.sqlite_path == "timeline.db"


def test_no_url_is_the_default_store():
    assert StoreUrl.parse(None).text == "sqlite:///timeline.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", "unsupported database URL 'mysql://x': use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"),
        ("sqlite:///", "sqlite URL needs a path: sqlite:///timeline.db"),
    ],
)
def test_any_other_url_is_refused_with_what_to_give(url, message):
    with pytest.raises(ConfigurationError) as refused:
        StoreUrl.parse(url)
    assert str(refused.value) == message


def test_a_postgresql_url_is_shown_without_its_password():
    assert "secret" not in StoreUrl.parse("postgresql://u:secret@h:5432/db").shown
