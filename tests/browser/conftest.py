"""A real ``timeline serve`` over the small branch, tokens granted with the CLI, and a headless Chromium.

Skipped, saying why, where the system's Chromium is missing (CI installs it: .ci/run).
Screenshots go to docs/screenshots/ (README names the folder).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.browser.branch_store import build

CHROMIUM = Path(os.environ.get("TIMELINE_CHROMIUM", "/usr/bin/chromium"))
TIMELINE = Path(sys.executable).with_name("timeline")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

GRANTS = {
    "branch_head": ["bert", "--role", "branch_head", "--branch", "BR001"],
    "rm": ["rita", "--role", "rm", "--rm", "RM001"],
    "other_rm": ["rob", "--role", "rm", "--rm", "RM002"],
    "compliance": ["carol", "--role", "compliance"],
    "ops": ["otto", "--role", "ops"],
}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (CI installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    base: str
    db: str
    tokens: dict[str, str]

    def cli_state(self, customer: str, as_of: str | None = None, known_at: str | None = None) -> dict:
        """``timeline state CUSTOMER --json`` for the same instants: what every figure on the page must equal."""
        args = [str(TIMELINE), "state", customer, "--json", "--db", self.db]
        args += ["--as-of", as_of] if as_of else []
        args += ["--known-at", known_at] if known_at else []
        return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Iterator[Served]:
    db = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'branch.db'}"
    build(db)
    tokens = {}
    for role, args in GRANTS.items():
        granted = subprocess.run(
            [str(TIMELINE), "access", "grant", *args, "--db", db], capture_output=True, text=True, check=True
        )
        tokens[role] = granted.stdout.splitlines()[-1]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(TIMELINE), "serve", "--db", db, "--port", str(port)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "timeline serve did not come up"
            time.sleep(0.1)
        yield Served(base, db, tokens)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page, name: str, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page, served: Served, role: str) -> None:
    page.goto(served.base + "/")
    page.get_by_label("API token").fill(served.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
