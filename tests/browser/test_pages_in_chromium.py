"""The pages in a real Chromium: every figure shown is the CLI's for the same instants; roles and CSRF hold."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.browser.branch_store import BEFORE_CORRECTION, BETWEEN_RECORDINGS, CORRECTION_RECORDED
from tests.browser.conftest import CHROMIUM, screenshot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (CI installs it)")


def _instant(text: str | None) -> dt.datetime | None:
    return None if text in (None, "none") else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_figures_are_the_cli(page, cli: dict) -> None:
    """Tier, stage, points, AUM, branch, RM, next change and the instants asked, as ``state --json`` says."""
    assert page.locator("#tier").inner_text() == cli["tier"]
    assert page.locator("#lifecycle").inner_text() == cli["lifecycle"]
    assert page.locator("#points").inner_text() == f"{cli['points']:,}"
    assert page.locator("#aum").inner_text() == f"{Decimal(cli['aum']):,.2f}"
    assert page.locator("#branch").inner_text() == cli["branch_id"]
    assert page.locator("#rm").inner_text() == cli["relationship_manager"]
    next_change = page.locator("#next-change time")
    if cli["next_change_at"] is None:
        assert page.locator("#next-change").inner_text() == "none"
    else:
        assert _instant(next_change.inner_text()) == _instant(cli["next_change_at"])
    for shown, asked in (("#shown-as-of", "as_of"), ("#shown-known-at", "known_at")):
        on_page, of_cli = _instant(page.locator(shown).inner_text()), _instant(cli[asked])
        if of_cli.microsecond == 999999:  # a date asked: its end in the policy's zone, on both
            assert on_page == of_cli.replace(microsecond=0)
        else:  # now: the page's and the CLI's, a moment apart
            assert abs(on_page - of_cli) < dt.timedelta(minutes=2)


def _tz_date(days_back: int) -> str:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    return (dt.datetime.now(shanghai).date() - dt.timedelta(days=days_back)).isoformat()


def test_a_branch_head_follows_an_at_risk_customer_back_a_year_and_compliance_before_a_correction(page, served):
    screenshot_page = page
    page.goto(served.base + "/")
    screenshot(screenshot_page, "sign-in")
    sign_in(page, served, "branch_head")
    assert page.locator("h1").inner_text() == "Branch BR001"
    screenshot(page, "branch")

    page.locator("#at-risk a", has_text="C1").click()
    page.wait_for_url("**/customers/C1")
    assert_figures_are_the_cli(page, served.cli_state("C1"))
    assert page.locator("#lifecycle").inner_text() == "at_risk"
    screenshot(page, "customer-branch-head")

    a_year_ago = _tz_date(365)
    page.get_by_label("As of (business time").fill(f"{a_year_ago}T23:59:59")
    page.get_by_role("button", name="Move the page").click()
    page.wait_for_url(f"**/customers/C1?as_of={a_year_ago}T23%3A59%3A59*")
    assert_figures_are_the_cli(page, served.cli_state("C1", as_of=a_year_ago))
    assert page.get_by_label("As known at (system time").is_disabled()

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, "compliance")
    page.goto(f"{served.base}/customers/C1?as_of={a_year_ago}")
    page.get_by_label("As known at (system time").fill(f"{BEFORE_CORRECTION}T23:59:59")
    page.get_by_role("button", name="Move the page").click()
    page.wait_for_url(f"**known_at={BEFORE_CORRECTION}T23%3A59%3A59*")
    then = served.cli_state("C1", as_of=a_year_ago, known_at=BEFORE_CORRECTION)
    assert_figures_are_the_cli(page, then)
    today = served.cli_state("C1", as_of=a_year_ago)
    assert then["aum"] != today["aum"], "the store must hold a correction recorded after BEFORE_CORRECTION"
    note = page.locator("#differs").inner_text()
    assert (
        "1 correction recorded after" in note
        and f"aum: {Decimal(then['aum']):,.2f} then, {Decimal(today['aum']):,.2f} as known today" in note
    )
    screenshot(page, "customer-time-machine")

    page.goto(f"{served.base}/customers/C1")
    voided = page.locator(".voided del")
    assert "deposit 100,000.00" in voided.inner_text()
    assert page.locator(".event.customer-registered .summary").first.inner_text().startswith("registered: 王小明")
    assert CORRECTION_RECORDED in page.locator(".event.correction-recorded .recorded").inner_text()
    screenshot(page, "customer-compliance")

    page.get_by_role("link", name="3. at risk (3a)").first.click()
    page.wait_for_url("**/policy#lifecycle-3*")
    assert page.locator("#lifecycle-3a").count() == 1
    screenshot(page, "policy", full_page=False)  # the section the rule links to


def test_compliance_moves_as_known_at_to_an_instant_between_two_recordings_of_one_day(page, served):
    sign_in(page, served, "compliance")
    page.goto(f"{served.base}/customers/C2")
    known_at = page.get_by_label("As known at (system time, +08:00)")
    known_at.fill(BETWEEN_RECORDINGS)
    page.get_by_role("button", name="Move the page").click()
    page.wait_for_url("**known_at=2026-02-01T12%3A00%3A30*")
    assert page.locator("#shown-known-at").inner_text() == f"{BETWEEN_RECORDINGS}+08:00"
    assert known_at.input_value() == BETWEEN_RECORDINGS, "the picker holds the instant asked, to the second"
    summaries = page.locator(".event .summary").all_inner_texts()
    assert "visit by phone: rate review" in summaries, "recorded at 10:00 that day: known"
    assert "visit by branch: wealth plan" not in summaries, "recorded at 16:00 that day: not yet known"
    assert_figures_are_the_cli(page, served.cli_state("C2", known_at=f"{BETWEEN_RECORDINGS}+08:00"))
    screenshot(page, "customer-between-recordings")


def test_an_rm_sees_their_worklist_and_cannot_open_another_rms_customer(page, served):
    sign_in(page, served, "other_rm")
    assert page.url.endswith("/worklist")
    response = page.goto(f"{served.base}/customers/C1")
    assert response.status == 404
    assert page.locator(".error").inner_text() == "no such customer"
    screenshot(page, "not-found")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, "rm")
    assert page.locator("h1").inner_text() == "Worklist of RM001"
    screenshot(page, "worklist")
    response = page.goto(f"{served.base}/customers/C1")
    assert response.status == 200 and page.locator("#customer-id").inner_text() == "C1"


def test_a_form_posted_without_its_csrf_token_is_refused(page, served):
    sign_in(page, served, "rm")
    refused = page.request.post(f"{served.base}/sign-out", form={"other": "x"}, max_redirects=0)
    assert refused.status == 403
    assert "CSRF" in refused.text()
    assert page.goto(f"{served.base}/worklist").status == 200, "the session is still open"


def test_a_tablet_reads_the_customer_page_in_one_column(browser, served):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, locale="zh-CN")
    page = context.new_page()
    sign_in(page, served, "rm")
    page.goto(f"{served.base}/customers/C1")
    state_box = page.locator("section.state").bounding_box()
    charts = page.locator("section.charts").bounding_box()
    assert charts["y"] > state_box["y"] + state_box["height"] - 1, "the charts come below the state box"
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    screenshot(page, "customer-tablet")
    context.close()
