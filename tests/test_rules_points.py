"""POLICY §4 "Loyalty points (积分)", read as a specification: one scenario per rule, at its boundary instants.

Every test runs on the in-memory store (the ``branch`` fixture). Business
times are written in Asia/Shanghai (+08:00), the policy's time zone, unless a
test is about reading a UTC instant in that zone.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import correction, deposit, event, registered, withdrawal
from tests.support.ids import uid
from tests.support.instants import utc
from timeline.projections.referrals import qualification_id

REGISTERED = "2024-06-01T09:00:00+08:00"
D = "2025-01-02T09:00:00+08:00"
"""A deposit instant d."""
D_PLUS_30 = "2025-02-01T09:00:00+08:00"
"""d + 30 days (exactly 30 × 24 hours)."""
JUST_BEFORE_VEST = "2025-02-01T08:59:59+08:00"
"""d + 29 days 23:59:59."""


def greeting(at: str, occasion: str = "birthday", customer_id: str = "C1") -> dict[str, Any]:
    return event("greeting.sent", customer_id, at, {"occasion": occasion, "channel": "wechat"})


def survey(at: str, customer_id: str = "C1") -> dict[str, Any]:
    return event("survey.completed", customer_id, at, {"score": 5})


def redeem(points: int, at: str, customer_id: str = "C1") -> dict[str, Any]:
    return event("points.redeemed", customer_id, at, {"points": points, "reward": "rice cooker"})


def referral(referrer: str, referred: str, at: str) -> dict[str, Any]:
    return event("referral.made", referrer, at, {"referred_customer_id": referred})


def available(branch, at: str, customer_id: str = "C1", known_at: str | None = None) -> int:
    return branch.state(customer_id, as_of=at, known_at=known_at).points.available


def lines(branch, at: str, kind: str, customer_id: str = "C1", known_at: str | None = None) -> list:
    return [line for line in branch.state(customer_id, as_of=at, known_at=known_at).points.ledger if line.kind == kind]


def vested(branch, at: str, e: dict[str, Any]) -> int:
    """The points that one deposit's vest line gave (0 if it has no line yet)."""
    found = [line.points for line in lines(branch, at, "vest") if line.event_ids == (uid(e),)]
    assert len(found) <= 1
    return found[0] if found else 0


@pytest.fixture
def c1(branch):
    """C1, registered (and recorded) in 2024; later events are recorded in 2030 unless a test says otherwise."""
    branch.recording_at(REGISTERED).accept(registered("C1", at=REGISTERED))
    return branch.recording_at("2030-01-01T00:00:00+00:00")


# --- Earning: deposits held for 30 days ------------------------------------------------------------------------


def test_deposit_earns_floor_of_held_over_100_at_exactly_d_plus_30_days(c1):
    d = deposit(at=D, amount="12345.67")
    c1.accept(d)

    assert available(c1, D) == 0
    assert available(c1, JUST_BEFORE_VEST) == 0
    pending = c1.state(as_of=JUST_BEFORE_VEST).points.pending
    assert [(p.vests_at, p.points_if_held, p.event_id) for p in pending] == [(utc(D_PLUS_30), 123, uid(d))]
    assert c1.state(as_of=JUST_BEFORE_VEST).points.next_change_at == utc(D_PLUS_30)

    assert available(c1, D_PLUS_30) == 123
    [line] = lines(c1, D_PLUS_30, "vest")
    assert (line.at, line.points, line.bucket, line.event_ids) == (utc(D_PLUS_30), 123, 2025, (uid(d),))
    assert c1.state(as_of=D_PLUS_30).points.pending == ()


def test_deposit_below_one_unit_earns_nothing(c1):
    c1.accept(deposit(at=D, amount="99.99"))

    assert available(c1, D_PLUS_30) == 0


def test_time_deposit_of_at_least_12_months_earns_double(c1):
    terms = {"A1": None, "A2": 3, "A3": 6, "A4": 12, "A5": 24, "A6": 60}
    made = {
        account: deposit(at=D, amount="10000.00", account_id=account, product="time", term_months=months)
        if months
        else deposit(at=D, amount="10000.00", account_id=account)
        for account, months in terms.items()
    }
    c1.accept(*made.values())

    assert available(c1, JUST_BEFORE_VEST) == 0
    assert {a: vested(c1, D_PLUS_30, e) for a, e in made.items()} == {
        "A1": 100,  # demand
        "A2": 100,
        "A3": 100,  # 6 months: not long enough
        "A4": 200,  # 12 months: doubled
        "A5": 200,
        "A6": 200,
    }


def test_partial_withdrawal_within_the_30_days_reduces_what_is_held(c1):
    d = deposit(at=D, amount="10000.00")
    c1.accept(d, withdrawal(at="2025-01-12T09:00:00+08:00", amount="3000.00"))

    assert vested(c1, D_PLUS_30, d) == 70


def test_withdrawal_counts_inside_the_closed_window_and_not_after_it(c1):
    cases = {
        "A1": (D, 70),  # the same instant as the deposit: balances are read after all its events
        "A2": (D_PLUS_30, 70),  # the window [d, d + 30 days] is closed
        "A3": ("2025-02-01T09:00:01+08:00", 100),  # one second later the deposit has already vested
    }
    made = {account: deposit(at=D, amount="10000.00", account_id=account) for account in cases}
    cuts = [withdrawal(at=at, amount="3000.00", account_id=account) for account, (at, _) in cases.items()]
    c1.accept(*made.values(), *cuts)

    assert {a: vested(c1, D_PLUS_30, e) for a, e in made.items()} == {a: pts for a, (_, pts) in cases.items()}
    assert available(c1, "2025-06-01T00:00:00+08:00") == 240


def test_withdrawal_of_older_money_also_reduces_held_because_held_is_the_lowest_balance(c1):
    old = deposit(at="2024-12-01T09:00:00+08:00", amount="5000.00")
    new = deposit(at=D, amount="10000.00")
    # 15,000 after d; withdrawing 8,000 leaves 7,000: only 2,000 above the 5,000 there before d stayed.
    c1.accept(old, new, withdrawal(at="2025-01-07T09:00:00+08:00", amount="8000.00"))

    assert vested(c1, D_PLUS_30, new) == 20
    assert vested(c1, D_PLUS_30, old) == 50  # the old deposit had vested (2024-12-31) before the withdrawal


def test_held_is_clamped_at_zero_when_the_balance_falls_below_its_level_before_d(c1):
    old = deposit(at="2024-12-01T09:00:00+08:00", amount="5000.00")
    new = deposit(at=D, amount="10000.00")
    c1.accept(old, new, withdrawal(at="2025-01-07T09:00:00+08:00", amount="12000.00"))

    assert vested(c1, D_PLUS_30, new) == 0
    assert [line.event_ids for line in lines(c1, D_PLUS_30, "vest")] == [(uid(old),), (uid(new),)]


def test_a_later_deposit_inside_the_window_does_not_raise_what_an_earlier_one_held(c1):
    first = deposit(at=D, amount="10000.00")
    second = deposit(at="2025-01-05T09:00:00+08:00", amount="10000.00")
    c1.accept(first, second, withdrawal(at="2025-01-20T09:00:00+08:00", amount="15000.00"))

    # lowest over [d, d+30d] is 5,000: the first deposit keeps 5,000; the second drops to 5,000 (below its before).
    assert vested(c1, D_PLUS_30, first) == 50
    assert vested(c1, "2025-02-04T09:00:00+08:00", second) == 0


def test_withdrawal_from_another_account_does_not_reduce_held(c1):
    other = deposit(at="2024-12-01T09:00:00+08:00", amount="8000.00", account_id="A2")
    d = deposit(at=D, amount="10000.00", account_id="A1")
    c1.accept(other, d, withdrawal(at="2025-01-10T09:00:00+08:00", amount="8000.00", account_id="A2"))

    assert vested(c1, D_PLUS_30, d) == 100


def test_deposits_into_one_account_at_one_instant_share_held_in_stored_order(c1):
    # Two accounts, the same two deposits at d, stored in opposite orders; then 5,000 leaves each account.
    demand_1 = deposit(at=D, amount="4000.00", account_id="A1")
    time_1 = deposit(at=D, amount="6000.00", account_id="A1", product="time", term_months=12)
    time_2 = deposit(at=D, amount="6000.00", account_id="A2", product="time", term_months=12)
    demand_2 = deposit(at=D, amount="4000.00", account_id="A2")
    c1.accept(demand_1)  # stored order across batches (positions), not batch boundaries, decides
    c1.accept(time_1, time_2, demand_2)
    c1.accept(
        withdrawal(at="2025-01-03T09:00:00+08:00", amount="5000.00", account_id="A1"),
        withdrawal(at="2025-01-03T09:00:00+08:00", amount="5000.00", account_id="A2"),
    )

    # held = 10,000 − 5,000 = 5,000 in each account, given out in stored order, each taking at most its amount.
    assert vested(c1, D_PLUS_30, demand_1) == 40  # its 4,000
    assert vested(c1, D_PLUS_30, time_1) == 20  # the last 1,000, doubled
    assert vested(c1, D_PLUS_30, time_2) == 100  # 5,000 of its 6,000, doubled
    assert vested(c1, D_PLUS_30, demand_2) == 0
    assert available(c1, D_PLUS_30) == 160


def test_deposits_at_one_instant_into_different_accounts_do_not_share(c1):
    a1 = deposit(at=D, amount="4000.00", account_id="A1")
    a2 = deposit(at=D, amount="6000.00", account_id="A2")
    c1.accept(a1, a2, withdrawal(at="2025-01-03T09:00:00+08:00", amount="5000.00", account_id="A2"))

    assert vested(c1, D_PLUS_30, a1) == 40
    assert vested(c1, D_PLUS_30, a2) == 10


def test_a_withdrawal_that_arrives_late_gives_the_same_points_as_in_business_order(c1):
    d = deposit(at=D, amount="10000.00")
    c1.recording_at("2025-01-02T10:00:00+08:00").accept(d)
    c1.recording_at("2025-03-01T09:00:00+08:00").accept(withdrawal(at="2025-01-12T09:00:00+08:00", amount="3000.00"))

    assert available(c1, D_PLUS_30, known_at="2025-02-15T00:00:00+08:00") == 100
    assert available(c1, D_PLUS_30, known_at="2025-03-01T09:00:00+08:00") == 70


def test_points_go_into_the_bucket_of_the_year_they_vest_in_read_in_shanghai(c1):
    in_2025 = deposit(at="2025-12-01T23:59:59+08:00", amount="1000.00", account_id="A1")
    in_2026 = deposit(at="2025-12-02T00:00:00+08:00", amount="2000.00", account_id="A2")
    c1.accept(in_2025, in_2026)

    state = c1.state(as_of="2026-01-01T00:00:00+08:00")
    assert state.points.buckets == {2025: 10, 2026: 20}
    assert available(c1, "2025-12-31T23:59:59+08:00") == 10


# --- Earning: referral, birthday, survey ---------------------------------------------------------------------------


def test_referral_qualified_earns_500_at_its_occurred_at(branch):
    first_deposit = "2025-03-01T10:00:00+08:00"
    branch.accept(
        registered("A", at="2025-01-01T09:00:00+08:00"),
        referral("A", "R", at="2025-02-01T09:00:00+08:00"),
        registered("R", at="2025-02-01T09:00:00+08:00"),
        deposit("R", at=first_deposit, amount="10000.00"),
    )

    assert available(branch, "2025-03-01T09:59:59+08:00", customer_id="A") == 0
    assert available(branch, first_deposit, customer_id="A") == 500
    [line] = lines(branch, first_deposit, "earn", customer_id="A")
    assert (line.at, line.points, line.bucket) == (utc(first_deposit), 500, 2025)
    assert line.event_ids == (qualification_id("R"),)


def test_birthday_greeting_earns_100_once_per_calendar_year(c1):
    first = greeting("2025-05-02T09:00:00+08:00")
    c1.accept(
        first,
        greeting("2025-11-02T09:00:00+08:00"),
        greeting("2025-02-01T09:00:00+08:00", occasion="festival"),  # other occasions earn nothing
        greeting("2025-03-01T09:00:00+08:00", occasion="anniversary"),
    )

    assert available(c1, "2025-05-02T08:59:59+08:00") == 0
    assert available(c1, "2025-12-31T00:00:00+08:00") == 100
    [line] = lines(c1, "2025-12-31T00:00:00+08:00", "earn")
    assert (line.at, line.points, line.bucket, line.event_ids) == (
        utc("2025-05-02T09:00:00+08:00"),
        100,
        2025,
        (uid(first),),
    )


def test_birthday_years_are_shanghai_years_not_utc_years(c1):
    # 2025-12-31T23:59+08:00 is 15:59Z on 31 Dec; 2026-01-01T00:00+08:00 is 16:00Z, still 31 Dec in UTC.
    c1.accept(greeting("2025-12-31T23:59:00+08:00"), greeting("2025-12-31T16:00:00Z"))

    assert available(c1, "2026-01-01T00:00:00+08:00") == 200
    assert c1.state(as_of="2026-01-01T00:00:00+08:00").points.buckets == {2025: 100, 2026: 100}


def test_two_birthday_greetings_on_different_utc_dates_in_one_shanghai_year_earn_once(c1):
    # 2026-01-01T00:30+08:00 is 2025-12-31 in UTC; 2026-12-31T23:00+08:00 is 2026-12-31 in UTC. Both 2026 here.
    c1.accept(greeting("2025-12-31T16:30:00Z"), greeting("2026-12-31T23:00:00+08:00"))

    assert available(c1, "2027-01-01T00:00:00+08:00") == 100


def test_the_birthday_cap_follows_business_order_not_arrival_order(c1):
    later = greeting("2025-11-02T09:00:00+08:00")
    earlier = greeting("2025-05-02T09:00:00+08:00")
    c1.accept(later)
    c1.accept(earlier)

    [line] = lines(c1, "2025-12-31T00:00:00+08:00", "earn")
    assert (line.at, line.event_ids) == (utc("2025-05-02T09:00:00+08:00"), (uid(earlier),))
    assert available(c1, "2025-06-01T00:00:00+08:00") == 100


def test_survey_earns_20_once_per_calendar_month_in_shanghai(c1):
    c1.accept(
        survey("2025-03-01T00:00:00+08:00"),
        survey("2025-03-31T23:59:59+08:00"),
        survey("2025-03-31T16:00:00Z"),  # 2025-04-01T00:00+08:00: April in Shanghai
        survey("2025-04-30T12:00:00+08:00"),
    )

    assert available(c1, "2025-03-31T23:59:59+08:00") == 20
    assert available(c1, "2025-04-01T00:00:00+08:00") == 40
    assert available(c1, "2025-05-01T00:00:00+08:00") == 40
    assert [line.points for line in lines(c1, "2025-05-01T00:00:00+08:00", "earn")] == [20, 20]


# --- Expiry ------------------------------------------------------------------------------------------------------


def test_the_bucket_of_year_y_expires_at_the_start_of_year_y_plus_3_in_shanghai(c1):
    earned = greeting("2025-06-01T09:00:00+08:00")
    c1.accept(earned, greeting("2026-06-01T09:00:00+08:00"))

    assert available(c1, "2027-12-31T23:59:59+08:00") == 200
    assert c1.state(as_of="2027-12-31T23:59:59+08:00").points.next_change_at == utc("2028-01-01T00:00:00+08:00")
    assert available(c1, "2028-01-01T00:00:00+08:00") == 100
    assert available(c1, "2027-12-31T16:00:00Z") == 100  # the same instant, written in UTC
    assert c1.state(as_of="2028-01-01T00:00:00+08:00").points.buckets == {2026: 100}
    [line] = lines(c1, "2028-01-01T00:00:00+08:00", "expire")
    assert (line.at, line.points, line.bucket, line.event_ids) == (
        utc("2028-01-01T00:00:00+08:00"),
        -100,
        2025,
        (uid(earned),),
    )
    assert available(c1, "2028-12-31T23:59:59+08:00") == 100
    assert available(c1, "2029-01-01T00:00:00+08:00") == 0


# --- Redemption ------------------------------------------------------------------------------------------------


def test_redemption_consumes_the_oldest_unexpired_bucket_first_then_the_next(c1):
    spend = redeem(150, "2026-06-01T09:00:00+08:00")
    c1.accept(greeting("2025-06-01T09:00:00+08:00"), greeting("2026-05-01T09:00:00+08:00"), spend)

    state = c1.state(as_of="2026-06-01T09:00:00+08:00")
    assert state.points.available == 50
    assert state.points.buckets == {2025: 0, 2026: 50}
    [line] = [line for line in state.points.ledger if line.kind == "redeem"]
    assert (line.points, line.event_ids) == (-150, (uid(spend),))
    assert "100 from 2025" in line.note and "50 from 2026" in line.note
    # What was left came from 2026, so it lasts until 2029, not 2028.
    assert available(c1, "2028-01-01T00:00:00+08:00") == 50
    assert available(c1, "2029-01-01T00:00:00+08:00") == 0


def test_redemption_uses_a_bucket_until_its_last_second_and_skips_it_once_expired(c1):
    c1.accept(greeting("2025-06-01T09:00:00+08:00"), greeting("2027-06-01T09:00:00+08:00"))

    c1.accept(redeem(60, "2027-12-31T23:59:59+08:00"))  # 2025 is still there: it pays
    assert c1.state(as_of="2027-12-31T23:59:59+08:00").points.buckets == {2025: 40, 2027: 100}

    reason = c1.reject(redeem(101, "2028-01-01T00:00:00+08:00"))  # 2025's 40 are gone at this instant
    assert "cannot redeem 101 points: 100 available" in reason
    c1.accept(redeem(100, "2028-01-01T00:00:00+08:00"))

    state = c1.state(as_of="2028-06-01T00:00:00+08:00")
    assert (state.points.available, state.points.buckets) == (0, {2027: 0})
    assert [line.points for line in state.points.ledger if line.kind == "expire"] == [-40]


def test_points_earned_at_the_same_instant_as_a_redemption_are_available_to_it(c1):
    c1.accept(deposit(at=D, amount="10000.00"))

    assert "0 available" in c1.reject(redeem(100, JUST_BEFORE_VEST))
    spend = redeem(100, D_PLUS_30)
    c1.accept(spend)

    assert available(c1, D_PLUS_30) == 0
    assert [line.kind for line in c1.state(as_of=D_PLUS_30).points.ledger] == ["vest", "redeem"]


def test_earnings_of_an_instant_come_before_its_redemptions_whatever_the_stored_order(c1):
    c1.accept(greeting("2025-06-01T09:00:00+08:00"))
    spend = redeem(100, "2025-07-01T09:00:00+08:00")
    c1.accept(spend)
    c1.accept(survey("2025-07-01T09:00:00+08:00"))  # same instant, stored after the redemption

    ledger = c1.state(as_of="2025-07-01T09:00:00+08:00").points.ledger
    assert [line.kind for line in ledger] == ["earn", "earn", "redeem"]
    assert available(c1, "2025-07-01T09:00:00+08:00") == 20


def test_redemption_of_more_than_available_is_rejected_and_nothing_is_stored(c1):
    c1.accept(greeting("2025-06-01T09:00:00+08:00"))

    reason = c1.reject(redeem(101, "2025-07-01T09:00:00+08:00"))

    assert reason == "cannot redeem 101 points: 100 available at 2025-07-01T09:00:00+08:00"
    assert "points.redeemed" not in c1.stored_types("C1")
    assert available(c1, "2025-07-01T09:00:00+08:00") == 100


def test_redemption_earlier_than_a_counted_redemption_is_rejected(c1):
    c1.accept(greeting("2025-06-01T09:00:00+08:00"), redeem(10, "2025-08-01T09:00:00+08:00"))

    reason = c1.reject(redeem(10, "2025-07-31T09:00:00+08:00"))

    assert "earlier than a counted redemption" in reason
    assert c1.stored_types("C1").count("points.redeemed") == 1
    c1.accept(redeem(10, "2025-08-01T09:00:00+08:00"))  # the same instant is not earlier
    assert available(c1, "2025-08-01T09:00:00+08:00") == 80


def test_a_voided_redemption_no_longer_blocks_earlier_ones(c1):
    late = redeem(10, "2025-08-01T09:00:00+08:00")
    c1.accept(greeting("2025-06-01T09:00:00+08:00"), late)
    c1.accept(correction(late["event_id"], at="2025-08-02T09:00:00+08:00"))

    c1.accept(redeem(30, "2025-07-01T09:00:00+08:00"))

    assert available(c1, "2025-12-01T00:00:00+08:00") == 70


# --- Overdraft after corrections ------------------------------------------------------------------------------


def test_voiding_a_deposit_whose_points_were_redeemed_leaves_an_overdraft_that_never_expires(c1):
    d = deposit(at=D, amount="10000.00")
    spend = redeem(100, "2025-02-10T09:00:00+08:00")
    c1.recording_at("2025-01-02T09:00:00+08:00").accept(d)
    c1.recording_at("2025-02-10T09:00:00+08:00").accept(spend)
    fix = correction(d["event_id"], at="2025-03-01T09:00:00+08:00")
    c1.recording_at("2025-03-01T09:00:00+08:00").accept(fix)

    now = c1.state(as_of="2025-03-01T09:00:00+08:00").points
    assert now.available == -100
    assert now.overdraft == 100
    [line] = [line for line in now.ledger if line.kind == "overdraft"]
    assert (line.at, line.points, line.event_ids) == (utc("2025-02-10T09:00:00+08:00"), -100, (uid(spend),))
    assert not [line for line in now.ledger if line.kind == "vest"]
    # It never expires: years later it is still subtracted, and only new earnings cover it.
    assert available(c1, "2029-12-31T00:00:00+08:00") == -100
    c1.recording_at("2029-06-01T09:00:00+08:00").accept(greeting("2029-06-01T09:00:00+08:00"))
    assert available(c1, "2029-06-01T09:00:00+08:00") == 0
    assert "cannot redeem 1 points: 0 available" in c1.reject(redeem(1, "2029-06-01T09:00:00+08:00"))
    # New earnings offset it but do not repay it: when their bucket expires, the overdraft shows again.
    assert available(c1, "2032-01-01T00:00:00+08:00") == -100

    # As known before the correction, the voided deposit still counts.
    before = c1.state(as_of="2025-03-01T09:00:00+08:00", known_at="2025-03-01T08:59:59+08:00").points
    assert (before.available, before.overdraft) == (0, 0)
    assert [(line.kind, line.event_ids) for line in before.ledger] == [("vest", (uid(d),)), ("redeem", (uid(spend),))]


def test_a_late_withdrawal_inside_the_holding_period_after_a_redemption_also_leaves_an_overdraft(c1):
    """Not a correction, but the same effect: money facts are never refused for the sake of points."""
    d = deposit(at=D, amount="10000.00")
    spend = redeem(100, "2025-02-10T09:00:00+08:00")
    c1.recording_at("2025-02-10T09:00:00+08:00").accept(d, spend)
    c1.recording_at("2025-03-01T09:00:00+08:00").accept(withdrawal(at="2025-01-20T09:00:00+08:00", amount="4000.00"))

    now = c1.state(as_of="2025-03-01T09:00:00+08:00").points
    assert (now.available, now.overdraft) == (-40, 40)
    assert [(line.kind, line.points, line.event_ids) for line in now.ledger] == [
        ("vest", 60, (uid(d),)),
        ("redeem", -60, (uid(spend),)),
        ("overdraft", -40, (uid(spend),)),
    ]
    assert available(c1, "2025-03-01T09:00:00+08:00", known_at="2025-03-01T08:59:59+08:00") == 0


def test_every_ledger_line_names_its_events(c1):
    d = deposit(at=D, amount="5000.00")
    bday = greeting("2025-05-02T09:00:00+08:00")
    poll = survey("2025-05-03T09:00:00+08:00")
    spend = redeem(60, "2025-06-01T09:00:00+08:00")
    c1.accept(d, bday, poll, spend)

    ledger = c1.state(as_of="2028-01-01T00:00:00+08:00").points.ledger
    assert [(line.kind, line.points, line.event_ids) for line in ledger] == [
        ("vest", 50, (uid(d),)),
        ("earn", 100, (uid(bday),)),
        ("earn", 20, (uid(poll),)),
        ("redeem", -60, (uid(spend),)),
        ("expire", -110, (uid(d), uid(bday), uid(poll))),
    ]
