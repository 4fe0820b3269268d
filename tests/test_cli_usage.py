"""The command line before any store is touched: help grouped by who uses it, usage mistakes, ``--version``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

TIMELINE = str(Path(sys.executable).with_name("timeline"))
ROOT = Path(__file__).resolve().parents[1]
TYPE_LABEL = re.compile(r"<(str|int|float|bool|path)>|(?<![/\w])(TEXT|INTEGER|FLOAT|BOOLEAN|PATH)\b")


def timeline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TIMELINE, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def panels(help_text: str) -> dict[str, list[str]]:
    """Each help panel's title and the commands listed in it."""
    found: dict[str, list[str]] = {}
    current = None
    for line in help_text.splitlines():
        if title := re.match(r"╭─ (.+?) ─", line):
            current = found.setdefault(title[1], [])
        elif current is not None and (row := re.match(r"│ (\S+)\s", line)):
            current.append(row[1])
    return found


def test_help_groups_the_commands_by_who_uses_them():
    result = timeline("--help")
    assert result.returncode == 0, result.stderr
    groups = panels(result.stdout)
    assert {"init", "ingest", "history", "verify", "schemas"} <= set(groups["Ingest and audit"])
    assert {"state", "explain", "followups"} <= set(groups["Relationship work"])
    assert {"relay", "consume", "status", "requalify"} <= set(groups["Kafka and operations"])
    assert "Commands" not in groups, "every command is in a group"


@pytest.mark.parametrize(
    "command", ["init", "ingest", "history", "verify", "generate", "state", "explain", "followups", "demo", "requalify"]
)
def test_help_names_values_by_meaning_never_by_python_type(command):
    result = timeline(command, "--help")
    assert result.returncode == 0, result.stderr
    assert not TYPE_LABEL.search(result.stdout), result.stdout
    assert "--help" in result.stdout


def test_state_help_shows_what_each_value_is():
    text = timeline("state", "--help").stdout
    assert re.search(r"--as-of\s+WHEN", text) and re.search(r"--db\s+URL", text)
    assert "CUSTOMER_ID" in text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["state", "--no-such-option"], "No such option: --no-such-option (see 'timeline state --help')"),
        (["ingest"], "Missing argument 'FILE'"),
        (["ingest", "-", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["stat"], "No such command 'stat'"),
    ],
)
def test_a_usage_mistake_is_one_line_and_exit_2(args, fragment):
    result = timeline(*args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("timeline: error: ") and fragment in line, line
    assert result.stdout == ""


def test_version_is_the_packages():
    result = timeline("--version")
    assert result.returncode == 0, result.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.stdout.strip() == f"timeline {version}"


def test_generate_counts_one_customer_over_one_year_in_the_singular(tmp_path):
    out = tmp_path / "branch.jsonl"
    result = timeline("generate", "--customers", "1", "--years", "1", "--end", "2025-12-31", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"generated [\d,]+ events for 1 customer over 1 year", result.stderr.strip()), result.stderr
