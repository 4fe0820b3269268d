"""The staff pages without a browser: the session cookie, CSRF on every form, roles and scope as the API's."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.browser.branch_store import build
from tests.factories import registered, visit
from timeline.application.access import Grants
from timeline.application.branch_report import report_csv, report_of
from timeline.domain.errors import TimelineError
from timeline.domain.rule_docs import ANCHORS
from timeline.engine import open_engine
from timeline.http.app import create_app
from timeline.http.pages.paging import PAGE_SIZE, page_of
from timeline.http.pages.session import SESSION_COOKIE
from timeline.http.service import Service, ServiceOptions

CALLERS = {
    "compliance": ("carol", "compliance", None, None),
    "branch_head": ("bert", "branch_head", None, "BR001"),
    "rm": ("rita", "rm", "RM001", None),
    "other_rm": ("rob", "rm", "RM002", None),
    "ops": ("otto", "ops", None, None),
    "source": ("core-banking", "source", None, None),
}


@dataclass
class Site:
    service: Service
    tokens: dict[str, str]
    app: object

    def browser(self) -> TestClient:
        return TestClient(self.app, raise_server_exceptions=True, follow_redirects=False)

    def signed_in(self, role: str) -> TestClient:
        client = self.browser()
        client.get("/")
        response = client.post("/sign-in", data={"token": self.tokens[role], "csrf": client.cookies["tl_csrf"]})
        assert response.status_code == 303, response.text
        return client


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('site') / 'branch.db'}"
    build(url)
    service = Service(ServiceOptions(store_url=url))
    grants = Grants(service.access)
    tokens = {role: grants.grant(name, r, rm, branch) for role, (name, r, rm, branch) in CALLERS.items()}
    yield Site(service, tokens, create_app(service))
    service.close()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_the_session_cookie_is_httponly_samesite_strict_not_secure_on_http_and_holds_no_token(site):
    client = site.browser()
    client.get("/")
    response = client.post("/sign-in", data={"token": site.tokens["rm"], "csrf": client.cookies["tl_csrf"]})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert "httponly" in attributes and "samesite=strict" in attributes and "secure" not in attributes
    assert site.tokens["rm"] not in cookie and site.tokens["rm"].removeprefix("tl_") not in cookie


def test_signing_in_without_the_forms_csrf_token_is_refused_and_opens_no_session(site):
    client = site.browser()
    client.get("/")
    response = client.post("/sign-in", data={"token": site.tokens["rm"]})
    assert response.status_code == 403 and "CSRF" in response.text
    assert SESSION_COOKIE not in response.cookies


def test_a_wrong_token_is_one_line_on_the_form_and_opens_no_session(site):
    client = site.browser()
    client.get("/")
    response = client.post("/sign-in", data={"token": "tl_not-a-token", "csrf": client.cookies["tl_csrf"]})
    assert response.status_code == 401 and "unknown or revoked token" in response.text
    assert SESSION_COOKIE not in response.cookies


def test_a_source_has_no_pages(site):
    client = site.browser()
    client.get("/")
    response = client.post("/sign-in", data={"token": site.tokens["source"], "csrf": client.cookies["tl_csrf"]})
    assert response.status_code == 403 and "no pages" in response.text


def test_signing_out_needs_the_sessions_csrf_token(site):
    client = site.signed_in("rm")
    assert client.post("/sign-out", data={}).status_code == 403
    assert client.post("/sign-out", data={"csrf": "forged"}).status_code == 403
    assert client.get("/worklist").status_code == 200
    page = client.get("/worklist").text
    response = client.post("/sign-out", data={"csrf": _csrf(page)})
    assert response.status_code == 303
    client.cookies.delete(SESSION_COOKIE)
    assert client.get("/worklist").status_code == 303


def test_an_altered_session_cookie_is_no_session(site):
    client = site.signed_in("rm")
    value = client.cookies[SESSION_COOKIE]
    client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    response = client.get("/customers/C1")
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_a_revoked_grant_ends_its_session_at_once(site):
    grants = Grants(site.service.access)
    token = grants.grant("temp-rm", "rm", "RM001")
    client = site.browser()
    client.get("/")
    client.post("/sign-in", data={"token": token, "csrf": client.cookies["tl_csrf"]})
    assert client.get("/customers/C1").status_code == 200
    grants.revoke("temp-rm")
    assert client.get("/customers/C1").status_code == 303


def test_an_rm_cannot_open_another_rms_customer_it_is_not_found(site):
    response = site.signed_in("other_rm").get("/customers/C1")
    assert response.status_code == 404 and "no such customer" in response.text


def test_a_branch_head_cannot_open_another_branchs_customer_or_branch(site):
    client = site.signed_in("branch_head")
    assert client.get("/customers/C4").status_code == 404
    assert client.get("/branches/BR002").status_code == 404
    assert client.get("/customers/C1").status_code == 200


def test_ops_sees_no_customer_page(site):
    client = site.signed_in("ops")
    assert client.get("/customers/C1").status_code == 403
    assert "sees no customer pages" in client.get("/").text


def test_only_compliance_may_ask_as_known_at_a_past_time(site):
    assert site.signed_in("branch_head").get("/customers/C1?known_at=2026-01-15").status_code == 403
    assert site.signed_in("rm").get("/customers/C1?known_at=2026-01-15").status_code == 403
    page = site.signed_in("compliance").get("/customers/C1?as_of=2025-12-02&known_at=2026-01-15")
    assert page.status_code == 200 and 'id="differs"' in page.text


def test_a_malformed_instant_or_an_unknown_parameter_is_a_400_page(site):
    client = site.signed_in("rm")
    bad = client.get("/customers/C1?as_of=yesterday")
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html") and "as_of" in bad.text
    assert client.get("/customers/C1?asof=2025-01-01").status_code == 400


def test_every_page_view_of_a_customer_is_on_the_access_trail(site):
    trail = site.service.trail
    before = len(list(trail.read(customer_id="C1", principal="rita")))
    site.signed_in("rm").get("/customers/C1")
    records = list(trail.read(customer_id="C1", principal="rita"))[before:]
    assert [r.what for r in records] == ["explain", "history_pii"]
    head_before = len(list(trail.read(customer_id="C1", principal="bert")))
    site.signed_in("branch_head").get("/customers/C1")
    assert [r.what for r in list(trail.read(customer_id="C1", principal="bert"))[head_before:]] == ["explain"]


def test_a_branch_head_sees_the_state_not_the_events(site):
    page = site.signed_in("branch_head").get("/customers/C1").text
    assert 'id="tier">high_net_worth<' in page and "王小明" not in page and "sees the state and its reasons" in page


def test_the_timeline_strikes_a_voided_event_beside_its_correction_and_shows_erased_pii(site):
    client = site.signed_in("rm")
    page = client.get("/customers/C1").text
    correction = page.index("correction: entered twice")
    assert page.index("<del>", correction) < page.index("deposit 100,000.00 to A1", correction)
    assert "registered: 王小明" in page
    assert "registered: [erased]" in client.get("/customers/C5").text


def test_each_branch_table_downloads_as_the_report_csv(site):
    client = site.signed_in("branch_head")
    page = client.get("/").text
    states = site.service.states_in_sight(site.service.authenticator.principal(site.tokens["branch_head"]))
    for name in re.findall(r'href="/branches/BR001/tables/([a-z-]+)\.csv"', page):
        response = client.get(f"/branches/BR001/tables/{name}.csv")
        assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
        assert (
            response.text.splitlines()[0]
            == report_csv(
                report_of(states, site.service.engine.policy, "BR001", states[0].as_of).table(name)
            ).splitlines()[0]
        )
    assert "/customers/C1" in page


def test_the_policy_is_served_with_every_anchor_the_explanations_link_to(site):
    page = site.browser().get("/policy").text
    for anchor in ANCHORS:
        assert f'id="{anchor}"' in page


def test_the_pages_are_not_in_the_openapi_document(site):
    paths = site.app.openapi()["paths"]
    assert not [p for p in paths if not p.startswith("/v1") and p not in ("/healthz", "/readyz", "/metrics")]


def test_the_branch_page_filters_by_rm_and_marks_key_persons(site):
    client = site.signed_in("branch_head")
    everyone = client.get("/branches/BR001").text
    assert "★ key person" in everyone and 'href="/customers/C1"' in everyone
    only_rm002 = client.get("/branches/BR001?rm=RM002").text
    assert 'href="/customers/C1"' not in only_rm002 and "relationship manager RM002" in only_rm002


def test_an_rms_worklist_tables_download_as_csv_and_the_branch_page_is_not_theirs(site):
    client = site.signed_in("rm")
    page = client.get("/worklist").text
    names = re.findall(r'href="/worklist/tables/([a-z0-9-]+)\.csv"', page)
    assert names
    for name in names:
        response = client.get(f"/worklist/tables/{name}.csv")
        assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    assert client.get("/branches/BR001").status_code == 403


def test_compliance_opens_any_customer_or_branch_from_the_start_page(site):
    client = site.signed_in("compliance")
    assert 'action="/go"' in client.get("/").text
    assert client.get("/go?customer=C4").headers["location"] == "/customers/C4"
    assert client.get("/customers/C4").status_code == 200
    assert client.get("/go?branch=BR002").headers["location"] == "/branches/BR002"
    assert client.get("/branches/BR002").status_code == 200


def test_a_picked_wall_time_is_read_in_the_policys_zone_to_the_second_and_a_date_is_its_end(site):
    client = site.signed_in("compliance")
    page = client.get("/customers/C2?known_at=2026-02-01T12:00:30").text
    assert 'id="shown-known-at">2026-02-01T12:00:30+08:00<' in page
    assert 'value="2026-02-01T12:00:30"' in page, "the picker holds the instant asked"
    assert "rate review" in page and "wealth plan" not in page, "recorded at 10:00 and 16:00 that day"
    day = client.get("/customers/C2?as_of=2025-12-31").text
    assert 'id="shown-as-of">2025-12-31T23:59:59+08:00<' in day and 'value="2025-12-31T23:59:59"' in day
    assert "As of (business time, +08:00)" in day


def test_the_labels_beside_tier_and_stage_are_the_policys(site):
    page = site.signed_in("rm").get("/customers/C1").text
    policy = site.service.engine.policy
    assert f'<span class="label">{policy.tier.label("high_net_worth")}</span>' in page
    assert policy.tier.label("high_net_worth") == "高净值 high net worth"
    assert '<span class="label">流失预警 at risk</span>' in page


def test_a_month_cursor_pages_whole_months_and_splits_only_a_month_longer_than_a_page():
    months = ["2025-12"] * 3 + ["2025-11"] * 7 + ["2025-10"] * 2 + ["2025-09"] * 12 + ["2025-08"]
    pages, cursor = [], None
    while True:
        paged = page_of(months, cursor, "events", size=5)
        pages.append((paged.start, paged.stop))
        if paged.older is None:
            break
        cursor = paged.older
    assert pages == [(0, 3), (3, 8), (8, 12), (12, 17), (17, 22), (22, 25)], "every item once, in order"
    assert page_of(months, "2025-11", "events", size=5).newer == "2025-12"
    assert page_of(months, "2025-07", "events", size=5).start == 25, "a month older than every item: none"
    assert page_of(months, "2026-01", "events", size=5).start == 0, "a month newer than every item: the newest"
    with pytest.raises(TimelineError, match="events: not a month cursor"):
        page_of(months, "November", "events")


def test_following_older_from_the_first_page_reaches_every_event_of_a_long_timeline(tmp_path):
    url = f"sqlite:///{tmp_path / 'long.db'}"
    engine = open_engine(url, create=True)
    start = dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
    lines = [registered("C9", at=start.isoformat(), name="赵六", branch_id="BR001", relationship_manager="RM001")]
    lines += [
        visit("C9", at=(start + dt.timedelta(hours=6 * i)).isoformat(), purpose=f"call {i}") for i in range(1, 700)
    ]
    assert all(o.status == "accepted" for o in engine.ingestor().ingest(list(enumerate(lines, 1))))
    engine.close()
    service = Service(ServiceOptions(store_url=url))
    try:
        token = Grants(service.access).grant("rita", "rm", "RM001", None)
        site = Site(service, {"rm": token}, create_app(service))
        client = site.signed_in("rm")
        seen, address, pages = [], "/customers/C9", 0
        while address:
            page = client.get(address).text
            seen += re.findall(r"visit by branch: call (\d+)<", page)
            pages += 1
            older = re.search(r'<a rel="next" href="([^"]+)"', page)
            address = older.group(1).replace("&amp;", "&") if older else None
        assert sorted(map(int, seen)) == list(range(1, 700)) and len(seen) == len(set(seen))
        assert pages >= 3 and len(re.findall(r"call \d+<", client.get("/customers/C9").text)) <= PAGE_SIZE
    finally:
        service.close()
