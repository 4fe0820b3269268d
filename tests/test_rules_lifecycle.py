"""POLICY §4, Lifecycle stage (客户生命周期): the specification, one scenario per rule, with its boundary instants.

As of Q, the first rule that holds decides: 1 prospect, 2 churned, 3 at_risk (a: stale complaint,
b: drop from the 90-day peak, c: silence), 4 loyal, 5 established, 6 new. Tenure runs from the first
counted deposit. Durations are exact (n × 24 h); timestamps are in Asia/Shanghai time (+08:00).

Every test runs against both stores (SQLite and PostgreSQL) through ``branch``.
"""

from __future__ import annotations

from tests.factories import correction, deposit, event, registered, visit, withdrawal
from tests.support.ids import ids
from tests.support.instants import at
from tests.support.instants import utc as instant

REGISTERED = "2025-01-01T09:00:00+08:00"
D = "2025-01-02T09:00:00+08:00"  # the first deposit


def stage_at(branch, as_of: str, customer_id: str = "C1") -> str:
    return branch.state(customer_id, as_of=as_of).lifecycle.stage


def complaint(complaint_id: str = "CP1", at: str = D, customer_id: str = "C1") -> dict:
    data = {"complaint_id": complaint_id, "category": "service", "severity": "medium", "description": "long queue"}
    return event("complaint.filed", customer_id, at, data)


def resolution(complaint_id: str = "CP1", at: str = D, customer_id: str = "C1") -> dict:
    data = {"complaint_id": complaint_id, "resolution": "apologised", "satisfied": True}
    return event("complaint.resolved", customer_id, at, data)


def greeting(at: str, customer_id: str = "C1") -> dict:
    return event("greeting.sent", customer_id, at, {"occasion": "festival", "channel": "wechat"})


def followup(at: str, customer_id: str = "C1") -> dict:
    data = {"followup_id": "F1", "due_date": "2025-12-31", "reason": "other-bank deposit matures"}
    return event("followup.scheduled", customer_id, at, data)


def referral(referred: str, at: str, customer_id: str = "C1") -> dict:
    return event("referral.made", customer_id, at, {"referred_customer_id": referred})


# --- 1. prospect, 6. new, 5. established ---------------------------------------------------------------------------


def test_prospect_until_the_first_deposit(branch):
    registration = registered(at=REGISTERED)
    branch.accept(registration, visit(at=at(REGISTERED, days=1)), deposit(at=at(REGISTERED, days=3)))

    stage = branch.state(as_of=at(REGISTERED, days=3, seconds=-1)).lifecycle
    assert stage.stage == "prospect"  # a visit is activity, but not a deposit
    assert stage.rule.startswith("1.")
    assert set(map(str, stage.event_ids)) == ids(registration)

    assert stage_at(branch, at(REGISTERED, days=3)) == "new"


def test_new_from_the_first_deposit(branch):
    first = deposit(at=D, amount="100.00")
    branch.accept(registered(at=REGISTERED), first)

    stage = branch.state(as_of=D).lifecycle
    assert stage.stage == "new"
    assert stage.rule.startswith("6.")
    assert set(map(str, stage.event_ids)) == ids(first)


def test_established_at_tenure_exactly_180_days(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=D), visit(at=at(D, days=100)))

    assert stage_at(branch, at(D, days=179)) == "new"
    assert branch.state(as_of=at(D, days=100)).next_change_at == instant(at(D, days=180))  # time alone
    assert stage_at(branch, at(D, days=180, seconds=-1)) == "new"
    stage = branch.state(as_of=at(D, days=180)).lifecycle
    assert stage.stage == "established"
    assert stage.rule.startswith("5.")
    assert "180 days" in stage.reason


def test_tenure_runs_from_the_first_counted_deposit_not_the_registration(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=at(REGISTERED, days=60)), visit(at=at(REGISTERED, days=200)))

    assert stage_at(branch, at(REGISTERED, days=239)) == "new"
    assert stage_at(branch, at(REGISTERED, days=240)) == "established"


def test_voiding_the_first_deposit_moves_tenure_to_the_next_counted_deposit(branch):
    branch.recording_at(REGISTERED).accept(registered(at=REGISTERED))
    mistaken = deposit(at=D, account_id="A1")
    branch.recording_at(D).accept(mistaken)
    branch.recording_at(at(D, days=30)).accept(deposit(at=at(D, days=30), account_id="A2"))
    branch.recording_at(at(D, days=100)).accept(visit(at=at(D, days=100)))
    voided = at(D, days=150)
    branch.recording_at(voided).accept(correction(mistaken["event_id"], at=voided))
    branch.recording_at("2030-01-01T00:00:00+00:00")

    q = at(D, days=180)
    assert branch.state(as_of=q, known_at=at(voided, seconds=-1)).lifecycle.stage == "established"
    assert branch.state(as_of=q, known_at=voided).lifecycle.stage == "new"  # tenure 150 days
    assert branch.state(as_of=at(D, days=29), known_at=voided).lifecycle.stage == "prospect"
    assert stage_at(branch, at(D, days=210)) == "established"


# --- 4. loyal ------------------------------------------------------------------------------------------------------


def test_loyal_at_tenure_730_days_with_tier_at_least_affluent(branch):
    first = deposit(at=D, amount="80000.00")
    branch.accept(registered(at=REGISTERED), first, visit(at=at(D, days=700)))

    assert branch.state(as_of=at(D, days=729)).tier.tier == "affluent"
    assert stage_at(branch, at(D, days=730, seconds=-1)) == "established"
    stage = branch.state(as_of=at(D, days=730)).lifecycle
    assert stage.stage == "loyal"
    assert stage.rule.startswith("4.")
    assert "affluent" in stage.reason
    assert set(map(str, stage.event_ids)) == ids(first)


def test_tenure_730_days_at_mass_without_a_qualified_referral_is_only_established(branch):
    branch.accept(registered(at=REGISTERED), deposit(at=D, amount="49999.99"), visit(at=at(D, days=700)))

    assert branch.state(as_of=at(D, days=730)).tier.tier == "mass"
    assert stage_at(branch, at(D, days=730)) == "established"


def test_loyal_through_a_counted_qualified_referral_at_mass_tier(branch):
    made = referral("R1", at=at(D, days=700))
    branch.accept(registered("C1", at=REGISTERED), deposit("C1", at=D, amount="1000.00"), made)
    # R1 is a new customer C1 brought: registered after the referral, first deposit ≥ 10,000.
    branch.accept(registered("R1", at=at(D, days=701)), deposit("R1", at=at(D, days=702), amount="10000.00"))
    assert "referral.qualified" in branch.stored_types("C1")

    state = branch.state("C1", as_of=at(D, days=730))
    assert state.tier.tier == "mass"
    assert state.qualified_referrals == 1
    assert state.lifecycle.stage == "loyal"
    assert "referral" in state.lifecycle.reason
    assert stage_at(branch, at(D, days=730, seconds=-1), "C1") == "established"


# --- 2. churned ----------------------------------------------------------------------------------------------------


def test_churned_when_aum_is_0_for_every_instant_of_the_last_90_days(branch):
    emptied = withdrawal(at=at(D, days=10), amount="1000.00")
    branch.accept(registered(at=REGISTERED), deposit(at=D, amount="1000.00"), emptied)
    e = at(D, days=10)

    assert stage_at(branch, at(e, days=89)) == "new"
    assert stage_at(branch, at(e, days=90, seconds=-1)) == "new"
    stage = branch.state(as_of=at(e, days=90)).lifecycle  # AUM(Q − 90 days) = AUM(e) = 0, events of e included
    assert stage.stage == "churned"
    assert stage.rule.startswith("2.")
    assert set(map(str, stage.event_ids)) == ids(emptied)
    assert branch.state(as_of=at(e, days=40)).next_change_at == instant(at(e, days=90))  # time alone


def test_a_deposit_ends_churn_at_once(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=D, amount="1000.00"),
        withdrawal(at=at(D, days=10), amount="1000.00"),
        deposit(at=at(D, days=200), amount="50.00", account_id="A2"),
    )

    assert stage_at(branch, at(D, days=200, seconds=-1)) == "churned"
    assert stage_at(branch, at(D, days=200)) == "established"


# --- 3a. at risk: a stale unresolved complaint ---------------------------------------------------------------------


def test_at_risk_when_a_complaint_stays_unresolved_for_30_days(branch):
    filed = complaint(at=at(D, days=5))
    branch.accept(registered(at=REGISTERED), deposit(at=D), filed)
    c = at(D, days=5)

    assert stage_at(branch, at(c, days=29)) == "new"
    assert stage_at(branch, at(c, days=30, seconds=-1)) == "new"
    stage = branch.state(as_of=at(c, days=30)).lifecycle  # filed at exactly Q − 30 days
    assert stage.stage == "at_risk"
    assert stage.rule.startswith("3.") and "3a" in stage.rule
    assert "CP1" in stage.reason
    assert set(map(str, stage.event_ids)) == ids(filed)


def test_two_stale_complaints_name_rule_3a_once_and_both_complaints(branch):
    first, second = complaint("CP1", at=at(D, days=5)), complaint("CP2", at=at(D, days=6))
    branch.accept(registered(at=REGISTERED), deposit(at=D), first, second)

    stage = branch.state(as_of=at(D, days=40)).lifecycle
    assert stage.rule == "3. at risk (3a)"
    assert "CP1" in stage.reason and "CP2" in stage.reason
    assert set(map(str, stage.event_ids)) == ids(first, second)


def test_a_resolved_complaint_is_no_risk(branch):
    c = at(D, days=5)
    branch.accept(registered(at=REGISTERED), deposit(at=D), complaint(at=c), resolution(at=at(c, days=30)))

    assert stage_at(branch, at(c, days=30)) == "new"  # resolved at Q itself: resolved by Q
    assert stage_at(branch, at(c, days=100)) == "new"


def test_a_resolution_after_q_does_not_count_as_of_q(branch):
    c = at(D, days=5)
    branch.accept(registered(at=REGISTERED), deposit(at=D), complaint(at=c), resolution(at=at(c, days=40)))

    assert stage_at(branch, at(c, days=30)) == "at_risk"
    assert stage_at(branch, at(c, days=40, seconds=-1)) == "at_risk"
    assert stage_at(branch, at(c, days=40)) == "new"


# --- 3b. at risk: AUM below half of its 90-day peak ----------------------------------------------------------------


def test_at_risk_when_aum_falls_below_half_of_its_90_day_peak(branch):
    peak = deposit(at=D, amount="20000.00")
    drop = withdrawal(at=at(D, days=10), amount="10000.01")
    branch.accept(registered(at=REGISTERED), peak, drop)

    stage = branch.state(as_of=at(D, days=10)).lifecycle  # 9,999.99 < 50% of 20,000
    assert stage.stage == "at_risk"
    assert "3b" in stage.rule
    assert "20,000.00 CNY" in stage.reason
    assert set(map(str, stage.event_ids)) == ids(peak, drop)  # the window: the peak, and the moves since


def test_exactly_half_of_the_peak_is_not_at_risk(branch):
    branch.accept(
        registered(at=REGISTERED), deposit(at=D, amount="20000.00"), withdrawal(at=at(D, days=10), amount="10000.00")
    )

    assert stage_at(branch, at(D, days=10)) == "new"


def test_the_peak_must_be_at_least_10000(branch):
    for customer, peak in (("C1", "9999.99"), ("C2", "10000.00")):
        branch.accept(
            registered(customer, at=REGISTERED),
            deposit(customer, at=D, amount=peak),
            withdrawal(customer, at=at(D, days=10), amount="9000.00"),
        )

    assert stage_at(branch, at(D, days=10), "C1") == "new"  # 999.99 left of a 9,999.99 peak: too small to matter
    assert stage_at(branch, at(D, days=10), "C2") == "at_risk"  # 1,000 left of a 10,000 peak


def test_the_peak_leaves_the_90_day_window_with_time_alone(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=D, amount="20000.00"),
        withdrawal(at=at(D, days=1), amount="15000.00"),  # 5,000: at risk
    )

    assert stage_at(branch, at(D, days=1)) == "at_risk"
    # The peak 20,000 is AUM(t) for t in [D, D + 1 day): still in [Q − 90 days, Q] until Q = D + 91 days.
    state = branch.state(as_of=at(D, days=31))
    assert state.lifecycle.stage == "at_risk"
    assert state.next_change_at == instant(at(D, days=91))
    assert stage_at(branch, at(D, days=91, seconds=-1)) == "at_risk"
    assert stage_at(branch, at(D, days=91)) == "new"


def test_next_change_at_finds_the_peak_leaving_the_window_behind_many_later_movements(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=D, amount="20000.00"),
        withdrawal(at=at(D, days=1), amount="15000.00"),
        *(deposit(at=at(D, days=2, seconds=3600 * k), amount="1.00") for k in range(70)),  # small, frequent
    )

    state = branch.state(as_of=at(D, days=40))
    assert state.lifecycle.stage == "at_risk"
    assert state.next_change_at == instant(at(D, days=91))
    assert stage_at(branch, at(D, days=91)) == "new"


# --- 3c. at risk: tenure ≥ 180 days and no customer activity in (Q − 180 days, Q] ---------------------------------


def test_at_risk_after_180_days_without_customer_activity(branch):
    last = visit(at=at(D, days=10))
    branch.accept(registered(at=REGISTERED), deposit(at=D), last)
    v = at(D, days=10)

    quiet = branch.state(as_of=at(v, days=180, seconds=-1))
    assert quiet.lifecycle.stage == "established"
    assert quiet.next_change_at == instant(at(v, days=180))  # time alone makes the customer at risk

    stage = branch.state(as_of=at(v, days=180)).lifecycle  # activity exactly at Q − 180 days does not count
    assert stage.stage == "at_risk"
    assert "3c" in stage.rule
    assert "180 days" in stage.reason
    assert set(map(str, stage.event_ids)) == ids(last)


def test_greetings_and_followups_are_not_customer_activity(branch):
    v = at(D, days=10)
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=D),
        visit(at=v),
        greeting(at=at(v, days=100)),
        followup(at=at(v, days=120)),
    )

    assert stage_at(branch, at(v, days=180)) == "at_risk"


def test_every_kind_of_customer_activity_keeps_a_customer_out_of_3c(branch):
    q = at(D, days=400)
    recent = at(D, days=390)  # in (Q − 180 days, Q]
    kinds = {
        "deposit.made": [deposit(at=recent, account_id="A9")],
        "withdrawal.made": [withdrawal(at=recent, amount="1.00")],
        "visit.recorded": [visit(at=recent)],
        "complaint.filed": [complaint(at=recent)],  # filed 10 days before Q: not stale yet
        "complaint.resolved": [complaint(at=at(D, days=100)), resolution(at=recent)],
        "referral.made": [referral("SOMEONE", at=recent)],
        "survey.completed": [event("survey.completed", "C1", recent, {"score": 5})],
        "points.redeemed": [event("points.redeemed", "C1", recent, {"points": 5, "reward": "umbrella"})],
        "customer.profile_updated": [event("customer.profile_updated", "C1", recent, {"occupation": "teacher"})],
    }
    branch.accept(registered(at=REGISTERED), deposit(at=D, amount="1000.00"))
    assert stage_at(branch, q) == "at_risk"
    for index, (kind, events) in enumerate(kinds.items()):
        customer = f"K{index}"
        branch.accept(registered(customer, at=REGISTERED), deposit(customer, at=D, amount="1000.00"))
        branch.accept(*({**e, "customer_id": customer} for e in events))
        assert stage_at(branch, q, customer) == "established", kind


def test_silence_from_the_first_deposit_alone_makes_a_customer_at_risk_at_tenure_180_days(branch):
    # With no other activity, the first deposit at exactly Q − 180 days is outside (Q − 180 days, Q]:
    # the customer goes from new straight to at_risk, never established.
    branch.accept(registered(at=REGISTERED), deposit(at=D))

    assert stage_at(branch, at(D, days=180, seconds=-1)) == "new"
    assert stage_at(branch, at(D, days=180)) == "at_risk"


# --- precedence ----------------------------------------------------------------------------------------------------


def test_churned_beats_at_risk(branch):
    branch.accept(
        registered(at=REGISTERED),
        deposit(at=D, amount="20000.00"),
        withdrawal(at=at(D, days=10), amount="20000.00"),
        complaint(at=at(D, days=11)),
    )

    assert stage_at(branch, at(D, days=99)) == "at_risk"  # 3a and 3b hold
    assert stage_at(branch, at(D, days=100)) == "churned"


def test_at_risk_beats_loyal(branch):
    filed = complaint(at=at(D, days=700))
    branch.accept(registered(at=REGISTERED), deposit(at=D, amount="80000.00"), filed)

    assert stage_at(branch, at(D, days=729)) == "established"
    stage = branch.state(as_of=at(D, days=730)).lifecycle
    assert stage.stage == "at_risk"
    assert set(map(str, stage.event_ids)) == ids(filed)
