"""POLICY §4, Tier (客户分层): the specification, one scenario per rule, with its boundary instants.

Thresholds (bank-default-v1): mass 0, affluent 50,000, high_net_worth 500,000,
private 6,000,000. Upgrades need a 7-day hold of the lowest AUM; downgrades
wait a 90-day grace period. Durations are exact (7 × 24 h, 90 × 24 h);
timestamps are written in the policy time zone, Asia/Shanghai (+08:00).

Every test runs on the in-memory store through ``branch``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from tests.factories import correction, deposit, registered, withdrawal
from tests.support.ids import ids
from tests.support.instants import at
from tests.support.instants import utc as instant
from timeline.domain.policy import load_policy
from timeline.projections.balances import StepLine
from timeline.projections.tier import tier_run

REGISTERED = "2025-01-01T09:00:00+08:00"
T = "2025-01-02T09:00:00+08:00"  # the first deposit in most scenarios


def tier_at(branch, as_of: str, customer_id: str = "C1", known_at: str | None = None) -> str:
    return branch.state(customer_id, as_of=as_of, known_at=known_at).tier.tier


def customer_at(branch, tier: str, amount: str, customer_id: str = "C1") -> dict:
    """A customer who deposited ``amount`` at T and so reached ``tier`` at T + 7 days; returns the deposit."""
    money = deposit(customer_id, at=T, amount=amount)
    branch.accept(registered(customer_id, at=REGISTERED), money)
    assert tier_at(branch, at(T, days=7), customer_id) == tier
    return money


def affluent_customer(branch, customer_id: str = "C1") -> dict:
    """Affluent since T + 7 days, with 60,000."""
    return customer_at(branch, "affluent", "60000.00", customer_id)


def high_net_worth_customer(branch, customer_id: str = "C1") -> dict:
    """High net worth since T + 7 days, with 600,000."""
    return customer_at(branch, "high_net_worth", "600000.00", customer_id)


# --- starting tier -----------------------------------------------------------------------------------------------


def test_a_customer_starts_at_mass_when_registered(branch):
    registration = registered(at=REGISTERED)
    branch.accept(registration)

    tier = branch.state(as_of=REGISTERED).tier
    assert tier.tier == "mass"
    assert tier.since == instant(REGISTERED)
    assert tier.rule == "registered"
    assert set(map(str, tier.event_ids)) == ids(registration)
    assert tier.changes == ()
    assert tier.pending is None


def test_a_deposit_alone_does_not_raise_the_tier_before_the_hold(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="10000000.00"))

    assert tier_at(branch, T) == "mass"
    assert tier_at(branch, at(T, days=3)) == "mass"


# --- upgrade after a 7-day hold ------------------------------------------------------------------------------------


def test_upgrade_after_exactly_7_days_held(branch):
    money = deposit(at=T, amount="50000.00")  # exactly the affluent threshold: "meets" is ≥
    branch.accept(registered(at=REGISTERED), money)

    before = branch.state(as_of="2025-01-09T08:59:59+08:00").tier  # 6 days 23:59:59 held
    assert before.tier == "mass"
    assert before.pending is not None
    assert (before.pending.to_tier, before.pending.at) == ("affluent", instant("2025-01-09T09:00:00+08:00"))

    after = branch.state(as_of="2025-01-09T09:00:00+08:00").tier  # exactly 7 × 24 h held
    assert after.tier == "affluent"
    assert after.since == instant("2025-01-09T09:00:00+08:00")
    assert after.rule == "upgrade after hold"
    assert set(map(str, after.event_ids)) == ids(money)


def test_upgrade_jumps_straight_to_the_highest_tier_the_lowest_aum_meets(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="600000.00"))

    assert tier_at(branch, at(T, days=7, seconds=-1)) == "mass"
    tier = branch.state(as_of=at(T, days=7)).tier
    assert tier.tier == "high_net_worth"
    assert [(c.from_tier, c.to_tier) for c in tier.changes] == [("mass", "high_net_worth")]


def test_upgrade_uses_the_lowest_aum_over_the_window_not_the_current_aum(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=T, amount="600000.00"),
        withdrawal(at=at(T, days=2), amount="500000.00"),  # 100,000 for a day
        deposit(at=at(T, days=3), amount="500000.00"),  # back to 600,000
    )

    assert tier_at(branch, at(T, days=7)) == "affluent"  # lowest over [T, T+7d] is 100,000
    assert tier_at(branch, at(T, days=10, seconds=-1)) == "affluent"
    assert tier_at(branch, at(T, days=10)) == "high_net_worth"  # 600,000 held 7 days since T+3d
    changes = branch.state(as_of=at(T, days=30)).tier.changes
    assert [(c.to_tier, c.at) for c in changes] == [
        ("affluent", instant(at(T, days=7))),
        ("high_net_worth", instant(at(T, days=10))),
    ]


def test_a_balance_that_only_passes_through_a_threshold_upgrades_nothing(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=T, amount="60000.00"),
        withdrawal(at=at(T, days=6, seconds=86399), amount="20000.00"),  # one second before the hold completes
    )

    for as_of in (at(T, days=7), at(T, days=30), at(T, days=400)):
        state = branch.state(as_of=as_of)
        assert state.tier.tier == "mass"
        assert state.tier.changes == ()
        assert state.tier.pending is None


def test_a_dip_inside_the_hold_window_restarts_it(branch):
    recovery = deposit(at=at(T, days=4), amount="20000.00")
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=T, amount="60000.00"),
        withdrawal(at=at(T, days=3), amount="20000.00"),  # 40,000: below affluent
        recovery,  # 60,000 again
    )

    assert tier_at(branch, at(T, days=7)) == "mass"
    before = branch.state(as_of=at(T, days=11, seconds=-1)).tier
    assert before.tier == "mass"
    assert before.pending is not None and before.pending.at == instant(at(T, days=11))

    after = branch.state(as_of=at(T, days=11)).tier  # 7 days after the dip recovered
    assert after.tier == "affluent"
    assert after.since == instant(at(T, days=11))
    assert set(map(str, after.event_ids)) == ids(recovery)


def test_a_dip_at_the_very_instant_the_hold_completes_blocks_the_upgrade(branch):
    # The window is closed, [t − 7 days, t]: AUM at t itself (after t's events) must meet the threshold too.
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=T, amount="60000.00"),
        withdrawal(at=at(T, days=7), amount="20000.00"),
        deposit(at=at(T, days=8), amount="20000.00"),
    )

    assert tier_at(branch, at(T, days=7)) == "mass"
    assert tier_at(branch, at(T, days=15, seconds=-1)) == "mass"
    assert tier_at(branch, at(T, days=15)) == "affluent"


# --- downgrade after a 90-day grace period -------------------------------------------------------------------------


def test_downgrade_after_exactly_90_days(branch):
    affluent_customer(branch)
    drop = withdrawal(at=at(T, days=20), amount="20000.00")  # 40,000 < 50,000: a downgrade is pending
    branch.accept(drop)
    t0 = at(T, days=20)

    at_drop = branch.state(as_of=t0).tier
    assert at_drop.tier == "affluent"
    assert at_drop.pending is not None
    assert (at_drop.pending.to_tier, at_drop.pending.at) == ("mass", instant(at(t0, days=90)))

    assert tier_at(branch, at(t0, days=89)) == "affluent"
    assert tier_at(branch, at(t0, days=90, seconds=-1)) == "affluent"

    tier = branch.state(as_of=at(t0, days=90)).tier
    assert tier.tier == "mass"
    assert tier.since == instant(at(t0, days=90))
    assert tier.rule == "downgrade after grace period"
    assert "90 days" in tier.reason
    assert set(map(str, tier.event_ids)) == ids(drop)
    assert tier.pending is None


def test_downgrade_lands_on_the_tier_aum_meets_at_the_due_instant_including_that_instants_events(branch):
    # C1: AUM 100,000 at the due instant → affluent.
    high_net_worth_customer(branch, "C1")
    t0 = at(T, days=30)
    branch.accept(withdrawal("C1", at=t0, amount="500000.00"))
    # C2: the same, plus a withdrawal at exactly t0 + 90 days → AUM 40,000 then → straight to mass.
    high_net_worth_customer(branch, "C2")
    last_minute = withdrawal("C2", at=at(t0, days=90), amount="60000.00")
    branch.accept(withdrawal("C2", at=t0, amount="500000.00"), last_minute)

    assert tier_at(branch, at(t0, days=90, seconds=-1), "C1") == "high_net_worth"
    assert tier_at(branch, at(t0, days=90), "C1") == "affluent"

    assert tier_at(branch, at(t0, days=90, seconds=-1), "C2") == "high_net_worth"
    tier = branch.state("C2", as_of=at(t0, days=90)).tier
    assert tier.tier == "mass"
    assert [(c.from_tier, c.to_tier) for c in tier.changes] == [("mass", "high_net_worth"), ("high_net_worth", "mass")]
    assert last_minute["event_id"] in set(map(str, tier.event_ids))


def test_recovery_before_90_days_cancels_the_downgrade(branch):
    affluent_customer(branch)
    t0 = at(T, days=20)
    branch.accept(
        withdrawal(at=t0, amount="20000.00"),  # 40,000
        deposit(at=at(t0, days=90, seconds=-1), amount="10000.00"),  # back to exactly 50,000, one second early
    )

    assert branch.state(as_of=at(t0, days=90, seconds=-1)).tier.pending is None
    for as_of in (at(t0, days=90), at(t0, days=400)):
        tier = branch.state(as_of=as_of).tier
        assert tier.tier == "affluent"
        assert [c.to_tier for c in tier.changes] == ["affluent"]


def test_a_new_drop_after_a_recovery_starts_a_new_grace_period(branch):
    affluent_customer(branch)
    t0 = at(T, days=20)
    t1 = at(t0, days=50)
    branch.accept(
        withdrawal(at=t0, amount="20000.00"),
        deposit(at=at(t0, days=40), amount="20000.00"),  # recovered: cancelled
        withdrawal(at=t1, amount="20000.00"),  # a new drop: a new grace period from t1
    )

    assert tier_at(branch, at(t0, days=90)) == "affluent"
    assert branch.state(as_of=t1).tier.pending.at == instant(at(t1, days=90))
    assert tier_at(branch, at(t1, days=90, seconds=-1)) == "affluent"
    assert tier_at(branch, at(t1, days=90)) == "mass"


def test_further_drops_during_the_grace_period_do_not_restart_it(branch):
    high_net_worth_customer(branch)
    t0 = at(T, days=20)
    branch.accept(
        withdrawal(at=t0, amount="200000.00"),  # 400,000: pending
        withdrawal(at=at(t0, days=60), amount="300000.00"),  # 100,000: a further drop
    )

    assert branch.state(as_of=at(t0, days=60)).tier.pending.at == instant(at(t0, days=90))
    assert tier_at(branch, at(t0, days=90, seconds=-1)) == "high_net_worth"
    assert tier_at(branch, at(t0, days=90)) == "affluent"  # 90 days from the first drop, to what AUM then meets
    assert tier_at(branch, at(t0, days=150)) == "affluent"


def test_an_upgrade_cancels_a_pending_downgrade(branch):
    high_net_worth_customer(branch)
    t0 = at(T, days=20)
    t1 = at(t0, days=30)
    branch.accept(
        withdrawal(at=t0, amount="500000.00"),  # 100,000: downgrade pending until t0 + 90 days
        deposit(at=t1, amount="6000000.00"),  # 6,100,000: enough for private
    )

    assert branch.state(as_of=at(t1, seconds=-1)).tier.pending.to_tier == "affluent"
    pending = branch.state(as_of=t1).tier.pending
    assert (pending.to_tier, pending.at) == ("private", instant(at(t1, days=7)))

    assert tier_at(branch, at(t1, days=7)) == "private"
    tier = branch.state(as_of=at(t0, days=200)).tier
    assert tier.tier == "private"
    assert [c.to_tier for c in tier.changes] == ["high_net_worth", "private"]  # no downgrade ever happened
    assert tier.pending is None


def test_at_one_instant_a_due_downgrade_comes_first_then_the_upgrade_then_the_pending_check(branch):
    # At t0 + 90 days: the due downgrade lands on what AUM (with that instant's deposit) meets — affluent;
    # no upgrade, since the 7-day window still holds the low balance; and no new pending downgrade,
    # since AUM meets the new tier.
    high_net_worth_customer(branch)
    t0 = at(T, days=20)
    branch.accept(
        withdrawal(at=t0, amount="570000.00"),  # 30,000
        deposit(at=at(t0, days=90), amount="70000.00"),  # 100,000, at the due instant itself
    )

    due = branch.state(as_of=at(t0, days=90)).tier
    assert due.tier == "affluent"
    assert [(c.from_tier, c.to_tier) for c in due.changes] == [
        ("mass", "high_net_worth"),
        ("high_net_worth", "affluent"),
    ]
    assert due.pending is None
    assert tier_at(branch, at(t0, days=300)) == "affluent"


def test_a_deposit_restoring_the_threshold_at_the_due_instant_cancels_the_downgrade(branch):
    # "the tier that AUM(t0 + 90 days) meets" never raises the tier: a downgrade is not an upgrade without a hold.
    affluent_customer(branch)
    t0 = at(T, days=20)
    branch.accept(
        withdrawal(at=t0, amount="20000.00"),  # 40,000
        deposit(at=at(t0, days=90), amount="600000.00"),  # 640,000 at the due instant
    )

    tier = branch.state(as_of=at(t0, days=90)).tier
    assert tier.tier == "affluent"
    assert [c.to_tier for c in tier.changes] == ["affluent"]
    assert (tier.pending.to_tier, tier.pending.at) == ("high_net_worth", instant(at(t0, days=97)))
    assert tier_at(branch, at(t0, days=97)) == "high_net_worth"


# --- instants, accounts, order -------------------------------------------------------------------------------------


def test_events_of_one_instant_take_effect_together(branch):
    affluent_customer(branch)
    x = at(T, days=20)
    # Stored withdrawal first: read one by one, AUM would pass through 30,000. Read per instant it stays 60,000.
    branch.accept(withdrawal(at=x, amount="30000.00"), deposit(at=x, amount="30000.00"))

    assert branch.state(as_of=x).tier.pending is None
    assert tier_at(branch, at(x, days=90)) == "affluent"
    assert tier_at(branch, at(x, days=400)) == "affluent"


def test_events_of_one_instant_do_not_interrupt_a_hold(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=T, amount="60000.00"),
        withdrawal(at=at(T, days=3), amount="30000.00"),
        deposit(at=at(T, days=3), amount="30000.00"),
    )

    assert tier_at(branch, at(T, days=7)) == "affluent"


def test_aum_sums_every_account(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=T, amount="30000.00", account_id="A1"),
        deposit(at=T, amount="20000.00", account_id="A2", product="time", term_months=12),
        # moving money between accounts at one instant changes nothing
        withdrawal(at=at(T, days=3), amount="20000.00", account_id="A1"),
        deposit(at=at(T, days=3), amount="20000.00", account_id="A3"),
    )

    state = branch.state(as_of=at(T, days=7))
    assert state.aum == 50000
    assert state.tier.tier == "affluent"
    assert tier_at(branch, at(T, days=7, seconds=-1)) == "mass"


def test_late_events_give_the_same_tier_as_in_business_order(branch):
    def story(customer_id: str) -> list[dict]:
        return [
            deposit(customer_id, at=T, amount="60000.00"),
            withdrawal(customer_id, at=at(T, days=3), amount="20000.00"),
            deposit(customer_id, at=at(T, days=4), amount="20000.00"),
            deposit(customer_id, at=at(T, days=12), amount="500000.00"),
            withdrawal(customer_id, at=at(T, days=40), amount="560000.00"),
        ]

    branch.recording_at("2025-01-01T09:00:00+08:00").accept(registered("C1", at=REGISTERED))
    branch.accept(registered("C2", at=REGISTERED))
    in_order = story("C1")
    for index, event in enumerate(in_order):
        branch.recording_at(at(T, days=index * 10 + 1)).accept(event)
    # C2 gets the same facts, but the withdrawal at T+3d and the deposit at T+12d arrive last, long after.
    first, dip, back, big, out = story("C2")
    branch.recording_at("2025-03-01T09:00:00+08:00").accept(first, back)
    branch.recording_at("2025-03-02T09:00:00+08:00").accept(dip)
    branch.recording_at("2025-03-03T09:00:00+08:00").accept(big, out)
    branch.recording_at("2030-01-01T00:00:00+00:00")

    def seen(customer_id: str, as_of: str) -> tuple:
        tier = branch.state(customer_id, as_of=as_of).tier
        pending = (tier.pending.to_tier, tier.pending.at) if tier.pending else None
        return tier.tier, tier.since, [(c.at, c.from_tier, c.to_tier) for c in tier.changes], pending

    for days in (0, 7, 11, 12, 19, 40, 129, 130, 500):
        assert seen("C2", at(T, days=days)) == seen("C1", at(T, days=days)), days
    assert [c.to_tier for c in branch.state("C2", as_of=at(T, days=500)).tier.changes] == [
        "affluent",
        "high_net_worth",
        "mass",
    ]


# --- corrections and the bitemporal view ---------------------------------------------------------------------------


def test_a_correction_voiding_a_deposit_removes_its_effect_from_its_recorded_at_on(branch):
    branch.recording_at("2025-01-01T09:00:00+08:00").accept(registered(at=REGISTERED))
    entered_twice = deposit(at=T, amount="60000.00")
    branch.recording_at(T).accept(entered_twice, deposit(at=T, amount="10000.00", account_id="A2"))
    corrected = "2025-03-01T09:00:00+08:00"
    branch.recording_at(corrected).accept(correction(entered_twice["event_id"], at=corrected))

    before = "2025-03-01T08:59:59+08:00"
    assert tier_at(branch, at(T, days=7), known_at=before) == "affluent"
    assert tier_at(branch, at(T, days=30), known_at=before) == "affluent"
    # as known from the correction on, at every business time — even those before the correction was recorded
    for as_of in (at(T, days=7), at(T, days=30), at(T, days=200)):
        tier = branch.state(as_of=as_of, known_at=corrected).tier
        assert tier.tier == "mass"
        assert tier.changes == ()
        assert tier.pending is None


# --- explanations (POLICY §8) ---------------------------------------------------------------------------------------


def test_the_explanation_names_the_deposits_behind_the_last_change(branch):
    # The events behind an upgrade are the movements of the hold that earned it: here the two deposits of
    # T + 30 days that lifted AUM over 50,000, not the older savings.
    savings = deposit(at=T, amount="10000.00")
    first = deposit(at=at(T, days=30), amount="20000.00")
    second = deposit(at=at(T, days=30), amount="30000.00", account_id="A2")
    branch.accept(registered(at=REGISTERED), savings, first, second)

    tier = branch.state(as_of=at(T, days=40)).tier
    assert tier.tier == "affluent"
    assert tier.since == instant(at(T, days=37))
    assert tier.rule == "upgrade after hold"
    assert "50,000.00 CNY" in tier.reason and "7 days" in tier.reason
    assert set(map(str, tier.event_ids)) == ids(first, second)
    [change] = tier.changes
    assert (change.at, change.from_tier, change.to_tier) == (tier.since, "mass", "affluent")
    assert change.event_ids == tier.event_ids


def test_a_pending_upgrade_and_a_pending_downgrade_say_when_they_take_effect(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=T, amount="60000.00"))

    upgrade = branch.state(as_of=at(T, days=1))
    assert upgrade.tier.tier == "mass"
    assert (upgrade.tier.pending.from_tier, upgrade.tier.pending.to_tier) == ("mass", "affluent")
    assert upgrade.tier.pending.at == instant("2025-01-09T09:00:00+08:00")
    assert upgrade.tier.next_change_at == upgrade.tier.pending.at

    drop = withdrawal(at=at(T, days=20), amount="55000.00")
    branch.accept(drop)
    downgrade = branch.state(as_of=at(T, days=25)).tier
    assert downgrade.tier == "affluent"
    assert (downgrade.pending.from_tier, downgrade.pending.to_tier) == ("affluent", "mass")
    assert downgrade.pending.at == instant(at(T, days=110))
    assert downgrade.pending.rule == "downgrade after grace period"
    assert drop["event_id"] in set(map(str, downgrade.pending.event_ids))

    assert branch.state(as_of=at(T, days=110)).tier.pending is None


def test_the_lowest_tier_has_no_downgrade_to_wait_for():
    """Below the lowest threshold (AUM under 0, which acceptance never stores) nothing is pending: the fold ends."""
    line = StepLine()
    line.add(instant(T), Decimal("-1.00"), uuid.uuid4())
    assert tier_run(line, load_policy()).changes == ()
