"""The Python passes ruff's lint rules (``[tool.ruff]`` in pyproject.toml) and is in ruff's format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("src", "tests", "bench", "projections", "consumers")
"""Every folder of the repository that holds Python."""


@pytest.mark.parametrize("command", [("check", "--no-cache"), ("format", "--check", "--no-cache")], ids=" ".join)
def test_ruff_finds_nothing_to_change(command: tuple[str, ...]) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    run = subprocess.run([str(ruff), *command, *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
