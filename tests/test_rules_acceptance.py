"""POLICY §2, the state-dependent acceptance rules: one test per rule, each on both backends.

Every rejection is checked twice: the reason names what is wrong (not a
generic "rejected"), and nothing was stored (the global log did not grow).
The ``branch`` fixture records at 2030-01-01Z unless told otherwise, so
every business time below is in the past.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import correction, deposit, erased, event, registered, visit, withdrawal
from timeline.application.keyring import load_history

T0 = "2025-01-01T09:00:00+08:00"


# --- events the shared factories do not write --------------------------------------------------


def filed(complaint_id: str = "K1", at: str = "2025-02-01T09:00:00+08:00", customer_id: str = "C1") -> dict[str, Any]:
    data = {"complaint_id": complaint_id, "category": "service", "severity": "medium", "description": "queue"}
    return event("complaint.filed", customer_id, at, data)


def resolved(complaint_id: str = "K1", at: str = "2025-02-10T09:00:00+08:00", customer_id: str = "C1") -> dict:
    data = {"complaint_id": complaint_id, "resolution": "apologised", "satisfied": True}
    return event("complaint.resolved", customer_id, at, data)


def scheduled(followup_id: str = "F1", at: str = "2025-02-01T09:00:00+08:00", customer_id: str = "C1") -> dict:
    data = {"followup_id": followup_id, "due_date": "2025-03-01", "reason": "funds arriving"}
    return event("followup.scheduled", customer_id, at, data)


def completed(followup_id: str = "F1", at: str = "2025-02-10T09:00:00+08:00", customer_id: str = "C1") -> dict:
    return event("followup.completed", customer_id, at, {"followup_id": followup_id, "outcome": "called"})


def birthday(at: str = "2025-05-02T09:00:00+08:00", customer_id: str = "C1") -> dict[str, Any]:
    return event("greeting.sent", customer_id, at, {"occasion": "birthday", "channel": "sms"})


def redeemed(points: int, at: str = "2025-06-01T09:00:00+08:00", customer_id: str = "C1") -> dict[str, Any]:
    return event("points.redeemed", customer_id, at, {"points": points, "reward": "umbrella"})


def referral(referred: str, at: str = "2025-01-05T09:00:00+08:00", customer_id: str = "C1") -> dict[str, Any]:
    return event("referral.made", customer_id, at, {"referred_customer_id": referred})


LIFECYCLES = {
    "complaint": (filed, resolved, "complaint_id", "filing"),
    "followup": (scheduled, completed, "followup_id", "scheduling"),
}


# --- helpers -----------------------------------------------------------------------------------


def head(branch) -> int:
    return branch.engine.store.head_position()


def refused(branch, sent: dict[str, Any], *fragments: str) -> str:
    """Send one event that must be rejected for a specific reason and leave the store as it was."""
    before = head(branch)
    types_before = branch.stored_types(sent["customer_id"]) if before else []
    reason = branch.reject(sent)
    for fragment in fragments:
        assert fragment in reason, (fragment, reason)
    assert head(branch) == before, "a rejected event must store nothing"
    if before:
        assert branch.stored_types(sent["customer_id"]) == types_before
    return reason


def statuses(outcomes: list) -> list[str]:
    return [o.status for o in outcomes]


@pytest.fixture
def c1(branch):
    """C1 registered on 2025-01-01 with 1,000.00 in A1 from 2025-01-02."""
    branch.accept(registered(at=T0), deposit(at="2025-01-02T09:00:00+08:00", amount="1000.00"))
    return branch


# --- balances ----------------------------------------------------------------------------------


def test_withdrawal_that_would_make_the_account_negative_is_rejected(c1):
    reason = refused(c1, withdrawal(at="2025-01-03T09:00:00+08:00", amount="1000.01"), "negative", "A1", "-0.01")
    assert "withdrawal of 1,000.01 CNY" in reason
    # A withdrawal from an account that never saw a deposit is just as negative.
    refused(c1, withdrawal(at="2025-01-03T09:00:00+08:00", amount="1.00", account_id="A2"), "negative", "A2")
    # A withdrawal before the deposit's instant: the money was not there yet.
    refused(c1, withdrawal(at="2025-01-01T12:00:00+08:00", amount="10.00"), "negative", "-10.00")
    c1.accept(withdrawal(at="2025-01-03T09:00:00+08:00", amount="1000.00"))
    assert c1.state(as_of="2025-01-04T00:00:00+08:00").aum == 0


def test_late_withdrawal_that_would_make_a_later_withdrawal_go_negative_is_rejected(c1):
    c1.accept(withdrawal(at="2025-03-01T09:00:00+08:00", amount="800.00"))
    # On its own date the late withdrawal fits (1000 → 700) but on 1 March the balance would be -100.
    reason = refused(c1, withdrawal(at="2025-02-01T09:00:00+08:00", amount="300.00"), "negative", "-100.00")
    assert "2025-03-01T09:00:00+08:00" in reason, "the reason names the instant at which the balance goes negative"
    c1.accept(withdrawal(at="2025-02-01T09:00:00+08:00", amount="200.00"))
    assert c1.state(as_of="2025-03-02T00:00:00+08:00").aum == 0


def test_balances_are_read_after_all_events_of_an_instant(branch):
    t = "2025-02-01T09:00:00+08:00"
    branch.accept(registered(at=T0))
    # A deposit and a withdrawal of the same instant: the balance at t is read after both.
    branch.accept(deposit(at=t, amount="500.00"))
    branch.accept(withdrawal(at=t, amount="500.00"))
    # Another deposit at t arrives; a further withdrawal at t may use it, whatever the stored order.
    branch.accept(deposit(at=t, amount="300.00"))
    branch.accept(withdrawal(at=t, amount="300.00"))
    assert branch.state(as_of=t).aum == 0
    refused(branch, withdrawal(at=t, amount="0.01"), "negative")
    # The same instant written with another offset is the same instant.
    branch.accept(deposit(at="2025-02-01T01:00:00Z", amount="50.00"))
    branch.accept(withdrawal(at="2025-02-01T02:00:00+01:00", amount="50.00"))


def test_correction_voiding_a_deposit_that_later_withdrawals_relied_on_is_rejected(c1):
    second = deposit(at="2025-01-10T09:00:00+08:00", amount="500.00")
    c1.accept(second, withdrawal(at="2025-02-01T09:00:00+08:00", amount="1200.00"))
    reason = refused(c1, correction(second["event_id"]), "negative", "-200.00", "A1")
    assert second["event_id"] in reason
    # A deposit nothing relied on can be voided.
    spare = deposit(at="2025-01-11T09:00:00+08:00", amount="50.00", account_id="A9")
    c1.accept(spare)
    c1.accept(correction(spare["event_id"]))
    assert c1.state().balances.get("A9", 0) == 0


def test_correction_voiding_a_withdrawal_is_always_accepted(c1):
    out = withdrawal(at="2025-02-01T09:00:00+08:00", amount="600.00")
    c1.accept(out)
    c1.accept(correction(out["event_id"]))
    assert c1.state().aum == 1000


# --- complaints and follow-ups -----------------------------------------------------------------


@pytest.mark.parametrize("kind", LIFECYCLES)
def test_opener_whose_id_is_already_used_by_a_counted_event_is_rejected(c1, kind):
    opener, closer, id_field, _ = LIFECYCLES[kind]
    c1.accept(opener("X1"))
    refused(c1, opener("X1", at="2025-03-01T09:00:00+08:00"), id_field, "X1", "already used")
    c1.accept(closer("X1"))
    refused(c1, opener("X1", at="2025-04-01T09:00:00+08:00"), "X1", "already used")
    # Ids are per customer: another customer may use the same one.
    c1.accept(registered("C2", at=T0), opener("X1", customer_id="C2"))


@pytest.mark.parametrize("kind", LIFECYCLES)
def test_closer_without_a_counted_opener_at_or_before_it_is_rejected(c1, kind):
    opener, closer, _, opened = LIFECYCLES[kind]
    refused(c1, closer("X1"), "X1", f"no counted {opened}")
    # An opener later in business time does not count for an earlier closer.
    c1.accept(opener("X1", at="2025-02-01T09:00:00+08:00"))
    refused(c1, closer("X1", at="2025-01-31T09:00:00+08:00"), "X1", f"no counted {opened}", "at or before")
    # An opener of another customer does not count.
    c1.accept(registered("C2", at=T0))
    refused(c1, closer("X1", customer_id="C2"), "X1", f"no counted {opened}")
    # A voided opener does not count.
    voided = opener("X2")
    c1.accept(voided, correction(voided["event_id"]))
    refused(c1, closer("X2"), "X2", f"no counted {opened}")
    # At the same instant as the opener is "at or before".
    c1.accept(closer("X1", at="2025-02-01T09:00:00+08:00"))


@pytest.mark.parametrize("kind", LIFECYCLES)
def test_closer_of_an_already_closed_id_is_rejected(c1, kind):
    opener, closer, _, _ = LIFECYCLES[kind]
    first = closer("X1")
    c1.accept(opener("X1"), first)
    reason = refused(c1, closer("X1", at="2025-03-01T09:00:00+08:00"), "X1", "already")
    assert first["event_id"] in reason


@pytest.mark.parametrize("kind", LIFECYCLES)
def test_an_id_becomes_reusable_once_its_opener_is_voided(c1, kind):
    opener, closer, _, _ = LIFECYCLES[kind]
    wrong = opener("X1")
    c1.accept(wrong, correction(wrong["event_id"]))
    again = opener("X1", at="2025-03-01T09:00:00+08:00")
    c1.accept(again)
    # The new opener is the one that counts: a closer before it has none.
    refused(c1, closer("X1", at="2025-02-15T09:00:00+08:00"), "X1", "no counted")
    c1.accept(closer("X1", at="2025-03-02T09:00:00+08:00"))


@pytest.mark.parametrize("kind", LIFECYCLES)
def test_voiding_a_closer_reopens_the_id(c1, kind):
    opener, closer, _, _ = LIFECYCLES[kind]
    first = closer("X1")
    c1.accept(opener("X1"), first)
    c1.accept(correction(first["event_id"]))
    # Open again: it may be closed anew, but its id is still used by the counted opener.
    refused(c1, opener("X1", at="2025-03-01T09:00:00+08:00"), "already used")
    c1.accept(closer("X1", at="2025-03-01T09:00:00+08:00"))


def test_voiding_a_resolution_reopens_the_complaint_in_the_projections(c1):
    complaint, fix = filed("K1", at="2025-02-01T09:00:00+08:00"), resolved("K1", at="2025-02-05T09:00:00+08:00")
    c1.accept(complaint, fix)
    q = "2025-04-01T09:00:00+08:00"
    assert c1.state(as_of=q).lifecycle.stage != "at_risk"
    c1.accept(correction(fix["event_id"]))
    state = c1.state(as_of=q)
    assert state.lifecycle.stage == "at_risk"
    assert "3a" in state.lifecycle.rule
    assert uuid.UUID(complaint["event_id"]) in state.lifecycle.event_ids


# --- points ------------------------------------------------------------------------------------


def test_redemption_earlier_than_a_counted_redemption_is_rejected(c1):
    c1.accept(birthday(at="2025-05-02T09:00:00+08:00"), redeemed(10, at="2025-06-01T09:00:00+08:00"))
    refused(c1, redeemed(10, at="2025-05-20T09:00:00+08:00"), "earlier than a counted redemption")
    # The same instant is not earlier; a later one is fine.
    c1.accept(redeemed(10, at="2025-06-01T09:00:00+08:00"), redeemed(10, at="2025-07-01T09:00:00+08:00"))
    # Once the later redemption is voided, an earlier one is no longer blocked by it.
    last = redeemed(10, at="2025-08-01T09:00:00+08:00")
    c1.accept(last, correction(last["event_id"]))
    c1.accept(redeemed(10, at="2025-07-15T09:00:00+08:00"))


def test_redemption_of_more_points_than_available_is_rejected(c1):
    refused(c1, redeemed(1, at="2025-01-05T09:00:00+08:00"), "cannot redeem 1 points", "0 available")
    c1.accept(birthday(at="2025-05-02T09:00:00+08:00"))
    # The 1,000.00 deposit of 2 January vested 10 points on 1 February; the birthday adds 100.
    refused(c1, redeemed(111, at="2025-05-02T09:00:00+08:00"), "cannot redeem 111", "110 available")
    # Before the birthday only the deposit's 10 points are there.
    refused(c1, redeemed(11, at="2025-05-01T09:00:00+08:00"), "10 available")
    # Points earned at the redemption's own instant are already available.
    c1.accept(redeemed(110, at="2025-05-02T09:00:00+08:00"))
    refused(c1, redeemed(1, at="2025-06-01T09:00:00+08:00"), "0 available")
    assert c1.state(as_of="2025-06-01T09:00:00+08:00").points.available == 0


def test_redemption_may_not_use_deposit_points_before_they_vest(branch):
    branch.accept(registered(at=T0), deposit(at="2025-01-02T09:00:00+08:00", amount="10000.00"))
    refused(branch, redeemed(100, at="2025-01-31T09:00:00+08:00"), "0 available")
    branch.accept(redeemed(100, at="2025-02-01T09:00:00+08:00"))


def test_a_late_withdrawal_is_accepted_even_if_it_uncovers_a_counted_redemption(branch):
    """Choice: POLICY §2 lists no such rejection, and a withdrawal is a fact from core banking.

    §4 says an overdraft is "possible only after corrections", but a late
    withdrawal inside a deposit's 30-day hold lowers what the deposit earned,
    after a redemption already spent it. Refusing the money movement would put
    the timeline out of step with the ledger, so it is stored and the points
    go into overdraft, as after a correction.
    """
    branch.accept(registered(at=T0), deposit(at="2025-01-02T09:00:00+08:00", amount="10000.00"))
    branch.accept(redeemed(100, at="2025-03-01T09:00:00+08:00"))
    branch.accept(withdrawal(at="2025-01-10T09:00:00+08:00", amount="5000.00"))
    points = branch.state(as_of="2025-03-02T09:00:00+08:00").points
    assert (points.available, points.overdraft) == (-50, 50)
    refused(branch, redeemed(1, at="2025-03-02T09:00:00+08:00"), "-50 available")


def test_complaint_and_followup_ids_are_separate(c1):
    """Choice: ``complaint_id`` and ``followup_id`` are different fields, so one value may serve both."""
    c1.accept(filed("X1"), scheduled("X1"))
    c1.accept(completed("X1"))
    refused(c1, resolved("X1", at="2025-01-31T09:00:00+08:00"), "no counted filing")
    c1.accept(resolved("X1"))


# --- corrections -------------------------------------------------------------------------------


def test_correction_naming_an_unknown_event_is_rejected(c1):
    missing = str(uuid.uuid4())
    refused(c1, correction(missing), "unknown event", missing)


def test_correction_naming_an_event_of_another_customer_is_rejected(c1):
    other = visit("C2", at="2025-01-03T09:00:00+08:00")
    c1.accept(registered("C2", at=T0), other)
    refused(c1, correction(other["event_id"]), "another customer", "C2")


def test_correction_naming_an_already_voided_event_is_rejected(c1):
    target = visit(at="2025-01-03T09:00:00+08:00")
    c1.accept(target, correction(target["event_id"]))
    refused(c1, correction(target["event_id"]), "already voided", target["event_id"])


@pytest.mark.parametrize("target_type", ["customer.registered", "correction.recorded", "customer.erased"])
def test_correction_naming_an_unvoidable_event_is_rejected(branch, target_type):
    reg = registered(at=T0)
    branch.accept(reg)
    if target_type == "customer.registered":
        target = reg
    elif target_type == "correction.recorded":
        seen = visit(at="2025-01-03T09:00:00+08:00")
        target = correction(seen["event_id"])
        branch.accept(seen, target)
    else:
        target = erased(at="2025-02-01T09:00:00+08:00")
        branch.accept(target)
    refused(branch, correction(target["event_id"]), target_type, "cannot be voided")


def test_correction_naming_a_referral_qualification_is_rejected(branch):
    branch.accept(registered("C1", at=T0), referral("R1", at="2025-01-05T09:00:00+08:00"))
    branch.accept(registered("R1", at="2025-01-06T09:00:00+08:00"))
    branch.accept(deposit("R1", at="2025-01-07T09:00:00+08:00", amount="10000.00"))
    stored = load_history(branch.engine.store, branch.engine.keyring(), "C1")
    [qualification] = [e for e in stored if e.type == "referral.qualified"]
    refused(branch, correction(str(qualification.event_id)), "referral.qualified", "cannot be voided")
    # ...and nobody outside the engine may write one.
    forged = event(
        "referral.qualified",
        "C1",
        "2025-01-07T09:00:00+08:00",
        {"referred_customer_id": "R1", "referral_event_id": str(uuid.uuid4())},
    )
    refused(branch, forged, "engine only")


@pytest.mark.parametrize("kind", LIFECYCLES)
def test_correction_naming_an_opener_that_has_a_counted_closer_is_rejected(c1, kind):
    opener, closer, _, _ = LIFECYCLES[kind]
    first, last = opener("X1"), closer("X1")
    c1.accept(first, last)
    refused(c1, correction(first["event_id"]), "X1", "void that first", last["event_id"])
    # Void the closer first, then the opener may go.
    c1.accept(correction(last["event_id"]), correction(first["event_id"]))


# --- erasure -----------------------------------------------------------------------------------


def test_erasure_while_an_account_holds_money_is_rejected(c1):
    c1.accept(deposit(at="2025-01-05T09:00:00+08:00", amount="25.50", account_id="B7"))
    reason = refused(c1, erased(at="2025-02-01T09:00:00+08:00"), "cannot be erased", "A1 1,000.00 CNY", "B7 25.50 CNY")
    assert reason
    c1.accept(withdrawal(at="2025-01-20T09:00:00+08:00", amount="1000.00"))
    refused(c1, erased(at="2025-02-01T09:00:00+08:00"), "B7 25.50")
    # "After all stored events": money that leaves only after the erasure's own instant still counts.
    c1.accept(withdrawal(at="2025-03-01T09:00:00+08:00", amount="25.50", account_id="B7"))
    c1.accept(erased(at="2025-02-01T09:00:00+08:00"))


def test_any_event_after_erasure_except_corrections_is_rejected(branch):
    seen = visit(at="2025-01-03T09:00:00+08:00")
    branch.accept(registered(at=T0), seen, erased(at="2025-02-01T09:00:00+08:00"))
    for late in (
        visit(at="2025-03-01T09:00:00+08:00"),
        visit(at="2025-01-04T09:00:00+08:00"),  # even one dated before the erasure
        deposit(at="2025-03-01T09:00:00+08:00"),
        filed("K1", at="2025-03-01T09:00:00+08:00"),
        erased(at="2025-03-01T09:00:00+08:00"),
        registered(at=T0),
    ):
        refused(branch, late, "C1")
    assert "erased" in branch.reject(visit(at="2025-03-01T09:00:00+08:00"))
    branch.accept(correction(seen["event_id"], at="2025-03-01T09:00:00+08:00"))


# --- one batch ---------------------------------------------------------------------------------


def test_rules_see_the_earlier_events_of_the_same_batch(branch):
    k1_filed, k1_fixed = filed("K1"), resolved("K1")
    spent = withdrawal(at="2025-01-03T09:00:00+08:00", amount="900.00")
    outcomes = branch.send(
        registered(at=T0),
        deposit(at="2025-01-02T09:00:00+08:00", amount="1000.00"),
        spent,
        withdrawal(at="2025-01-04T09:00:00+08:00", amount="200.00"),  # only 100 left
        k1_filed,
        filed("K1", at="2025-02-02T09:00:00+08:00"),  # id used earlier in the batch
        k1_fixed,
        resolved("K1", at="2025-02-11T09:00:00+08:00"),  # resolved earlier in the batch
        completed("F1"),  # scheduled only later in the batch
        scheduled("F1"),
        birthday(at="2025-05-02T09:00:00+08:00"),
        redeemed(100, at="2025-05-03T09:00:00+08:00"),
        redeemed(50, at="2025-05-04T09:00:00+08:00"),  # 100 + 1 (100.00 held 30 days) - 100 = 1 left
        correction(spent["event_id"]),
        correction(spent["event_id"]),  # voided earlier in the batch
        erased(at="2025-06-01T09:00:00+08:00"),  # 1000 still in A1 once the withdrawal is voided
    )
    assert statuses(outcomes) == [
        "accepted",
        "accepted",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "accepted",
        "accepted",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
    ]
    errors = [o.error for o in outcomes]
    assert "negative" in errors[3]
    assert "already used" in errors[5]
    assert "already resolved" in errors[7]
    assert "no counted scheduling" in errors[8]
    assert "1 available" in errors[12]
    assert "already voided" in errors[14]
    assert "cannot be erased" in errors[15]
    assert branch.stored_types("C1") == [
        "customer.registered",
        "deposit.made",
        "withdrawal.made",
        "complaint.filed",
        "complaint.resolved",
        "followup.scheduled",
        "greeting.sent",
        "points.redeemed",
        "correction.recorded",
    ]
    state = branch.state(as_of="2025-06-01T09:00:00+08:00")
    assert state.aum == 1000
    assert state.points.available == 10, "with the withdrawal voided all 1,000.00 was held: 10 + 100 - 100"


def test_a_batch_after_an_erasure_in_the_same_batch_takes_only_corrections(branch):
    seen = visit(at="2025-01-03T09:00:00+08:00")
    outcomes = branch.send(
        registered(at=T0),
        seen,
        erased(at="2025-02-01T09:00:00+08:00"),
        visit(at="2025-03-01T09:00:00+08:00"),
        correction(seen["event_id"], at="2025-03-01T09:00:00+08:00"),
    )
    assert statuses(outcomes) == ["accepted", "accepted", "accepted", "rejected", "accepted"]
    assert "erased" in outcomes[3].error


def test_a_batch_may_correct_an_event_sent_earlier_in_it(branch):
    wrong = deposit(at="2025-01-02T09:00:00+08:00", amount="70.00")
    outcomes = branch.send(registered(at=T0), wrong, correction(wrong["event_id"]))
    assert statuses(outcomes) == ["accepted"] * 3
    assert branch.state().aum == 0


def test_a_batch_is_checked_in_its_own_order_even_within_one_instant(branch):
    """Choice: each event is decided against what precedes it; a batch is not re-sorted by business time.

    POLICY §3 reads balances after all events of an instant, but acceptance is
    per event (§2): a withdrawal listed before the same-instant deposit that
    funds it is refused, the deposit stored. Senders list a deposit first.
    """
    t = "2025-01-05T09:00:00+08:00"
    branch.accept(registered(at=T0))
    outcomes = branch.send(withdrawal(at=t, amount="5.00"), deposit(at=t, amount="5.00"))
    assert statuses(outcomes) == ["rejected", "accepted"]
    assert "negative" in outcomes[0].error
    branch.accept(withdrawal(at=t, amount="5.00"))


def test_correction_naming_another_customers_event_from_the_same_batch_says_so(branch):
    other = visit("C2", at="2025-01-03T09:00:00+08:00")
    outcomes = branch.send(registered(at=T0), registered("C2", at=T0), other, correction(other["event_id"]))
    assert statuses(outcomes) == ["accepted", "accepted", "accepted", "rejected"]
    assert "another customer" in outcomes[3].error
