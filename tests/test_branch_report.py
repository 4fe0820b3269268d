"""Issue 12 item 3's data: the branch report, the one source of ``timeline demo``, ``timeline branch`` and the page.

Hand-built branches on the in-memory store, asked at the boundary instants of
each window: the calendar quarter of Q for tier moves (Asia/Shanghai), the
12 calendar months (Q − 12 months, Q] for surveys and complaints. Customers
are counted under their branch and RM as of Q.
"""

from __future__ import annotations

import csv
import io

import pytest

from tests.factories import correction, deposit, registered, withdrawal
from tests.support.feedback import filed, profile, referral, resolved, scheduled, survey
from tests.support.instants import utc
from timeline.application.branch_report import BranchReport, ReportTable, branch_report, report_csv
from timeline.application.states import StateReader
from timeline.domain.errors import NoCustomers

NOW = "2030-06-01T00:00:00+08:00"
"""As known at: after everything the tests record."""


def report(branch, as_of: str, branch_id: str | None = "BR001", rm: str | None = None, known_at: str = NOW):
    engine = branch.engine
    reader = StateReader(engine.store, engine.policy)
    return branch_report(reader, engine.policy, branch_id, utc(as_of), utc(known_at), rm)


def rows(result: BranchReport, name: str) -> list[tuple[str, ...]]:
    return list(result.table(name).rows)


def test_the_report_has_every_table_of_the_branch_page_in_order(branch):
    branch.accept(registered("C1"))
    result = report(branch, "2025-02-01T00:00:00+08:00")
    assert [t.name for t in result.tables] == [
        "tier-mix",
        "tier-moves",
        "funnel",
        "at-risk",
        "top-referrers",
        "overdue-followups",
        "surveys-by-rm",
        "complaints-by-category",
    ]
    assert (result.branch, result.rm, result.as_of) == ("BR001", None, utc("2025-02-01T00:00:00+08:00"))


def test_tier_mix_counts_customers_and_their_aum_per_tier_with_separators_and_two_decimals(branch):
    branch.accept(
        registered("C1"),
        deposit("C1", at="2025-01-02T09:00:00+08:00", amount="1234567.5"),
        registered("C2"),
        deposit("C2", at="2025-01-02T09:00:00+08:00", amount="10.00"),
        registered("C3", branch_id="BR002"),
    )
    result = report(branch, "2025-03-01T00:00:00+08:00")
    assert result.table("tier-mix").columns == ("tier", "customers", "share", "AUM (CNY)")
    assert rows(result, "tier-mix") == [
        ("mass", "1", "50.0%", "10.00"),
        ("affluent", "0", "0.0%", "0.00"),
        ("high_net_worth", "1", "50.0%", "1,234,567.50"),
        ("private", "0", "0.0%", "0.00"),
    ]


def test_a_tier_move_at_the_first_instant_of_the_quarter_is_this_quarters_and_one_just_before_is_not(branch):
    """An upgrade lands 7 days after the deposit that is held: 2025-04-01T00:00+08:00 opens Q2."""
    branch.accept(
        registered("C1"),
        deposit("C1", at="2025-03-25T00:00:00+08:00", amount="60000.00"),
        registered("C2"),
        deposit("C2", at="2025-03-24T23:59:59.999999+08:00", amount="60000.00"),
    )
    result = report(branch, "2025-04-15T00:00:00+08:00")
    moves = result.table("tier-moves")
    assert moves.columns == ("customer", "key person", "when", "move", "rule", "why")
    assert moves.customer_column == 0
    assert list(moves.rows) == [
        ("C1", "", "2025-04-01T00:00:00+08:00", "mass → affluent", "upgrade after hold", "≥ 50,000 held 7 days")
    ]
    assert moves.title.endswith(": 1 up, 0 down")
    # As of the last instant of Q1 it is C2's move that is this quarter's (and C1's has not happened yet).
    [q1] = rows(report(branch, "2025-03-31T23:59:59.999999+08:00"), "tier-moves")
    assert (q1[0], q1[2]) == ("C2", "2025-03-31T23:59:59.999999+08:00")


def test_the_funnel_counts_every_stage_in_funnel_order(branch):
    branch.accept(registered("C1"), registered("C2"), deposit("C2", at="2025-01-02T09:00:00+08:00"))
    result = report(branch, "2025-02-01T00:00:00+08:00")
    assert rows(result, "funnel") == [
        ("prospect", "1", "50.0%"),
        ("new", "1", "50.0%"),
        ("established", "0", "0.0%"),
        ("loyal", "0", "0.0%"),
        ("at_risk", "0", "0.0%"),
        ("churned", "0", "0.0%"),
    ]


def at_risk_branch(branch) -> None:
    """C1 (a key person, RM001) and C2 (RM002) lose more than half of their AUM on 2025-03-01."""
    branch.accept(
        registered("C1"),
        deposit("C1", at="2025-01-02T09:00:00+08:00", amount="20000.00"),
        withdrawal("C1", at="2025-03-01T09:00:00+08:00", amount="15000.00"),
        profile("C1", "2025-01-03T09:00:00+08:00", key_person=True),
        registered("C2", relationship_manager="RM002"),
        deposit("C2", at="2025-01-02T09:00:00+08:00", amount="30000.00"),
        withdrawal("C2", at="2025-03-01T09:00:00+08:00", amount="20000.00"),
    )


def test_at_risk_lists_customers_by_aum_with_the_reason_and_marks_key_persons(branch):
    at_risk_branch(branch)
    table = report(branch, "2025-03-02T00:00:00+08:00").table("at-risk")
    assert table.columns == ("customer", "key person", "RM", "tier", "AUM (CNY)", "reason")
    assert [(r[0], r[1], r[2], r[4]) for r in table.rows] == [
        ("C2", "", "RM002", "10,000.00"),
        ("C1", "key person", "RM001", "5,000.00"),
    ]
    assert all(r[5].startswith("3b.") for r in table.rows)
    assert table.title == "At risk: 2 customers"


def test_every_table_can_be_narrowed_to_one_relationship_manager(branch):
    at_risk_branch(branch)
    result = report(branch, "2025-03-02T00:00:00+08:00", rm="RM001")
    assert result.rm == "RM001"
    assert [r[0] for r in rows(result, "at-risk")] == ["C1"]
    assert [r[1] for r in rows(result, "tier-mix")] == ["1", "0", "0", "0"]


def test_customers_are_counted_under_the_rm_they_have_as_of_q(branch):
    at_risk_branch(branch)
    branch.accept(profile("C1", "2025-03-05T09:00:00+08:00", relationship_manager="RM002"))
    assert [r[0] for r in rows(report(branch, "2025-03-04T00:00:00+08:00", rm="RM001"), "at-risk")] == ["C1"]
    assert [r[0] for r in rows(report(branch, "2025-03-05T09:00:00+08:00", rm="RM002"), "at-risk")] == ["C2", "C1"]


def test_a_branch_or_rm_with_no_customer_as_of_q_is_a_clear_error(branch):
    branch.accept(registered("C1", at="2025-02-01T09:00:00+08:00"))
    with pytest.raises(NoCustomers, match="no customer is with branch BR009 as of 2025-03-01T00:00:00\\+08:00"):
        report(branch, "2025-03-01T00:00:00+08:00", branch_id="BR009")
    with pytest.raises(NoCustomers, match="relationship manager RM404 of branch BR001"):
        report(branch, "2025-03-01T00:00:00+08:00", rm="RM404")
    with pytest.raises(NoCustomers):  # not registered yet as of Q
        report(branch, "2025-01-31T00:00:00+08:00")


def test_top_referrers_rank_by_qualified_referrals(branch):
    branch.accept(
        registered("C1"),
        referral("C1", "2025-01-05T09:00:00+08:00", "C2"),
        registered("C2", at="2025-01-06T09:00:00+08:00"),
        deposit("C2", at="2025-01-07T09:00:00+08:00", amount="10000.00"),
    )
    table = report(branch, "2025-02-01T00:00:00+08:00").table("top-referrers")
    assert list(table.rows) == [("C1", "", "RM001", "1", "500")]


def test_overdue_followups_are_grouped_by_rm_from_the_day_after_the_due_date(branch):
    branch.accept(
        registered("C1"),
        scheduled("C1", "2025-02-01T09:00:00+08:00", "F1", "2025-03-10"),
        scheduled("C1", "2025-02-01T09:00:00+08:00", "F2", "2025-03-11"),
    )
    assert rows(report(branch, "2025-03-10T23:59:59.999999+08:00"), "overdue-followups") == []
    table = report(branch, "2025-03-12T00:00:00+08:00").table("overdue-followups")
    assert table.columns == ("branch", "RM", "overdue", "oldest due", "customer", "key person", "reason")
    assert list(table.rows) == [("BR001", "RM001", "2", "2025-03-10", "C1", "", "call about F1")]
    assert table.customer_column == 4


Q = "2025-12-31T18:00:00+08:00"
YEAR_BEFORE = "2024-12-31T18:00:00+08:00"


def test_surveys_count_in_the_twelve_months_before_q_start_excluded_q_included(branch):
    branch.accept(
        registered("C1", at="2024-01-01T09:00:00+08:00"),
        survey("C1", YEAR_BEFORE, 1),  # exactly 12 months before: out
        survey("C1", "2024-12-31T18:00:00.000001+08:00", 5),
        survey("C1", "2025-06-01T09:00:00+08:00", 4),
        survey("C1", Q, 4),
        registered("C2", at="2024-01-01T09:00:00+08:00", relationship_manager="RM002"),
        survey("C2", "2025-03-01T09:00:00+08:00", 2),
    )
    table = report(branch, Q).table("surveys-by-rm")
    assert table.columns == ("RM", "surveys", "mean score", "score 1", "score 2", "score 3", "score 4", "score 5")
    assert list(table.rows) == [
        ("RM001", "3", "4.33", "0", "0", "0", "2", "1"),
        ("RM002", "1", "2.00", "0", "1", "0", "0", "0"),
    ]
    assert table.title == f"Survey scores by RM, {YEAR_BEFORE} to {Q}"


def test_complaints_filed_in_the_window_by_category_with_those_resolved_and_resolved_satisfied_by_q(branch):
    branch.accept(
        registered("C1", at="2024-01-01T09:00:00+08:00"),
        filed("C1", YEAR_BEFORE, "K0", "手续费"),  # filed exactly 12 months before: out
        filed("C1", "2025-02-01T09:00:00+08:00", "K1", "手续费"),
        resolved("C1", "2025-02-05T09:00:00+08:00", "K1", satisfied=True),
        filed("C1", "2025-03-01T09:00:00+08:00", "K2", "手续费"),
        resolved("C1", Q, "K2", satisfied=False),
        filed("C1", "2025-04-01T09:00:00+08:00", "K3", "排队时间"),
        filed("C1", "2025-05-01T09:00:00+08:00", "K4", "手续费"),
        resolved("C1", "2026-01-01T09:00:00+08:00", "K4", satisfied=True),  # after Q
    )
    table = report(branch, Q).table("complaints-by-category")
    assert table.columns == ("category", "filed", "resolved", "resolved satisfied")
    assert list(table.rows) == [("手续费", "3", "2", "1"), ("排队时间", "1", "0", "0")]


def test_a_report_as_known_before_a_correction_still_counts_the_voided_event(branch):
    bad = survey("C1", "2025-06-01T09:00:00+08:00", 1)
    branch.recording_at("2025-06-01T10:00:00+08:00").accept(registered("C1", at="2024-01-01T09:00:00+08:00"), bad)
    branch.recording_at("2025-07-01T10:00:00+08:00").accept(
        correction(bad["event_id"], "C1", at="2025-07-01T10:00:00+08:00")
    )
    before = report(branch, Q, known_at="2025-07-01T09:59:59+08:00")
    after = report(branch, Q, known_at="2025-07-01T10:00:00+08:00")
    assert rows(before, "surveys-by-rm") == [("RM001", "1", "1.00", "1", "0", "0", "0", "0")]
    assert rows(after, "surveys-by-rm") == []


def test_every_branch_at_once_when_no_branch_is_named(branch):
    branch.accept(registered("C1"), registered("C2", branch_id="BR002"))
    result = report(branch, "2025-02-01T00:00:00+08:00", branch_id=None)
    assert rows(result, "funnel")[0] == ("prospect", "2", "100.0%")


def test_report_csv_is_rfc_4180_with_a_header_crlf_and_quoted_separators():
    table = ReportTable(
        "at-risk",
        "At risk",
        ("customer", "AUM (CNY)", "reason"),
        (("C1", "1,234.00", 'said "no", left'), ("C2", "0.00", "王小明")),
        0,
    )
    text = report_csv(table)
    assert text == 'customer,AUM (CNY),reason\r\nC1,"1,234.00","said ""no"", left"\r\nC2,0.00,王小明\r\n'
    assert list(csv.reader(io.StringIO(text))) == [list(table.columns), *map(list, table.rows)]


def test_the_demo_prints_the_reports_cells_cut_to_ten_customers_with_key_persons_starred():
    import datetime as dt

    from rich.console import Console

    from timeline.cli.demo import render_report

    columns = ("customer", "key person", "RM", "tier", "AUM (CNY)", "reason")
    risky = tuple((f"C{n:06d}", "key person" if n == 2 else "", "RM001", "mass", "1,000.00", "3c.") for n in range(12))
    result = BranchReport(
        None, dt.datetime(2025, 1, 1, tzinfo=dt.UTC), None, (ReportTable("at-risk", "At risk", columns, risky, 0),)
    )
    console = Console(width=120, record=True)
    for shown in render_report(result):
        console.print(shown)
    text = console.export_text()
    assert "C000002 *" in text and "C000009" in text and "C000010" not in text
    assert "the first 10 of 12; * key person" in text
    assert "1,000.00" in text and "┃ key person" not in text  # the flag is the star, not a column


@pytest.mark.parametrize(
    "as_of, since",
    [
        ("2025-12-31T18:00:00+08:00", "2024-12-31T18:00:00+08:00"),
        ("2024-02-29T12:00:00+08:00", "2023-02-28T12:00:00+08:00"),  # no 29 February: the month's last day
        ("2025-01-01T00:30:00+08:00", "2024-01-01T00:30:00+08:00"),  # in UTC still 2024: months are Shanghai's
    ],
)
def test_twelve_months_before_is_the_same_wall_clock_time_a_calendar_year_earlier_in_the_policy_zone(as_of, since):
    from timeline.application.report_table import months_before
    from timeline.domain.policy import load_policy

    assert months_before(utc(as_of), 12, load_policy().zone) == utc(since)
