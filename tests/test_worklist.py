"""Issue 12 item 4's data: an RM's worklist, at the boundary instants of its windows.

Exact durations (RULES §3): tier changes by time alone up to Q + 14 days, key
persons with no visit or greeting in (Q − 90 days, Q]. Calendar dates in
Asia/Shanghai: follow-ups and birthdays from Q's date to the date of Q + 14
days. Dates of birth are read decrypted through the key ring; erased
customers are left out.
"""

from __future__ import annotations

import pytest

from tests.factories import deposit, erased, registered, visit, withdrawal
from tests.support.backends import every_backend
from tests.support.feedback import greeting, profile, scheduled
from tests.support.instants import at, utc
from timeline.application.states import StateReader
from timeline.application.worklist import Worklist, worklist
from timeline.domain.errors import NoCustomers

NOW = "2030-06-01T00:00:00+08:00"
Q = "2025-05-01T12:00:00+08:00"


def work(branch, as_of: str = Q, rm: str = "RM001") -> Worklist:
    engine = branch.engine
    reader = StateReader(engine.store, engine.policy)
    return worklist(reader, engine.policy, rm, utc(as_of), utc(NOW), keys=engine.keyring())


def rows(result: Worklist, name: str) -> list[tuple[str, ...]]:
    return list(result.table(name).rows)


def test_the_worklist_has_its_tables_in_order(branch):
    branch.accept(registered("C1"))
    result = work(branch)
    assert (result.rm, result.as_of) == ("RM001", utc(Q))
    assert [t.name for t in result.tables] == [
        "at-risk",
        "overdue-followups",
        "upcoming-followups",
        "birthdays",
        "tier-changes",
        "key-persons-uncontacted",
    ]
    assert all(t.customer_column == 0 for t in result.tables)


def test_my_customers_at_risk_with_the_reason_and_not_another_rms(branch):
    branch.accept(
        registered("C1"),
        deposit("C1", at="2025-01-02T09:00:00+08:00", amount="20000.00"),
        withdrawal("C1", at="2025-04-20T09:00:00+08:00", amount="15000.00"),
        profile("C1", "2025-01-03T09:00:00+08:00", key_person=True),
        registered("C2", relationship_manager="RM002"),
        deposit("C2", at="2025-01-02T09:00:00+08:00", amount="20000.00"),
        withdrawal("C2", at="2025-04-20T09:00:00+08:00", amount="15000.00"),
    )
    [row] = rows(work(branch), "at-risk")
    assert row[:4] == ("C1", "key person", "mass", "5,000.00")
    assert row[4].startswith("3b.")


def test_an_rm_with_no_customer_as_of_q_is_a_clear_error(branch):
    branch.accept(registered("C1"))
    with pytest.raises(NoCustomers, match="no customer is with relationship manager RM404 as of 2025-05-01T12:00"):
        work(branch, rm="RM404")


def test_overdue_follow_ups_and_those_due_from_today_to_the_date_fourteen_days_on(branch):
    scheduled_at = "2025-04-01T09:00:00+08:00"
    branch.accept(
        registered("C1"),
        *(
            scheduled("C1", scheduled_at, f"F-{due}", due)
            for due in ("2025-04-30", "2025-05-01", "2025-05-15", "2025-05-16")
        ),
    )
    result = work(branch)
    assert [r[2:4] for r in rows(result, "overdue-followups")] == [("F-2025-04-30", "2025-04-30")]
    assert [r[3] for r in rows(result, "upcoming-followups")] == ["2025-05-01", "2025-05-15"]
    assert result.table("upcoming-followups").title == "My follow-ups due by 2025-05-15: 2"


@every_backend
def test_birthdays_from_today_to_the_date_fourteen_days_on_read_from_the_decrypted_date_of_birth(branch):
    branch.accept(
        registered("C1", birth_date="1980-05-01"),  # today
        registered("C2", birth_date="1980-05-15"),  # the 14th day on
        registered("C3", birth_date="1980-05-16"),  # one day too far
        registered("C4", birth_date="1980-04-30"),  # yesterday: next year's
    )
    table = work(branch).table("birthdays")
    assert table.columns == ("customer", "key person", "birthday", "in days", "turns")
    assert list(table.rows) == [("C1", "", "2025-05-01", "0", "45"), ("C2", "", "2025-05-15", "14", "45")]


def test_a_birthday_on_29_february_is_kept_on_the_28th_in_a_common_year(branch):
    branch.accept(registered("C1", at="2025-01-01T09:00:00+08:00", birth_date="1984-02-29"))
    assert rows(work(branch, "2025-02-20T09:00:00+08:00"), "birthdays") == [("C1", "", "2025-02-28", "8", "41")]


def test_an_erased_customer_is_left_out_of_the_worklist(branch):
    branch.accept(
        registered("C1", birth_date="1980-05-02"),
        scheduled("C1", "2025-01-05T09:00:00+08:00", "F1", "2025-01-10"),
        erased("C1", at="2025-03-01T09:00:00+08:00"),
        registered("C2", birth_date="1980-05-03"),
    )
    result = work(branch)
    assert [r[0] for r in rows(result, "birthdays")] == ["C2"]
    assert rows(result, "overdue-followups") == []


DOWNGRADE_DUE = "2025-05-02T09:00:00+08:00"
"""90 days after AUM fell below affluent's 50,000 on 2025-02-01T09:00+08:00."""


def downgrading(branch) -> None:
    branch.accept(
        registered("C1"),
        deposit("C1", at="2025-01-02T09:00:00+08:00", amount="60000.00"),
        withdrawal("C1", at="2025-02-01T09:00:00+08:00", amount="20000.00"),
    )


def test_a_tier_change_by_time_alone_exactly_fourteen_days_on_is_listed(branch):
    downgrading(branch)
    table = work(branch, at(DOWNGRADE_DUE, days=-14)).table("tier-changes")
    assert table.columns == ("customer", "key person", "move", "at", "rule", "AUM (CNY)")
    assert list(table.rows) == [
        ("C1", "", "affluent → mass", DOWNGRADE_DUE, "downgrade after grace period", "40,000.00")
    ]


def test_a_tier_change_a_moment_more_than_fourteen_days_on_is_not(branch):
    downgrading(branch)
    assert rows(work(branch, "2025-04-18T08:59:59.999999+08:00"), "tier-changes") == []


CONTACT = "2025-01-10T09:00:00+08:00"


def key_person_contacted(branch, contact: dict) -> None:
    branch.accept(
        registered("C1"),
        profile("C1", "2025-01-02T09:00:00+08:00", key_person=True),
        contact,
        registered("C2"),  # not a key person: never listed
    )


@pytest.mark.parametrize("contact", [visit("C1", at=CONTACT), greeting("C1", CONTACT)], ids=["visit", "greeting"])
def test_a_key_person_last_reached_exactly_ninety_days_ago_is_listed_a_moment_later_not(branch, contact):
    key_person_contacted(branch, contact)
    due = at(CONTACT, days=90)
    table = work(branch, due).table("key-persons-uncontacted")
    assert table.columns == ("customer", "tier", "AUM (CNY)", "last visit or greeting")
    assert list(table.rows) == [("C1", "mass", "0.00", CONTACT)]
    assert rows(work(branch, "2025-04-10T08:59:59.999999+08:00"), "key-persons-uncontacted") == []


def test_a_key_person_never_visited_nor_greeted_is_listed_as_never(branch):
    branch.accept(registered("C1"), profile("C1", "2025-01-02T09:00:00+08:00", key_person=True))
    assert rows(work(branch), "key-persons-uncontacted") == [("C1", "mass", "0.00", "never")]


def test_a_customer_no_longer_a_key_person_as_of_q_is_not_listed(branch):
    branch.accept(
        registered("C1"),
        profile("C1", "2025-01-02T09:00:00+08:00", key_person=True),
        profile("C1", "2025-04-30T09:00:00+08:00", key_person=False),
    )
    assert rows(work(branch), "key-persons-uncontacted") == []
    assert rows(work(branch, "2025-04-30T08:59:59+08:00"), "key-persons-uncontacted") == [
        ("C1", "mass", "0.00", "never")
    ]
