"""Issue 12 item 4: the key-person flag (关键人) as of Q, as known at K, is part of the state.

It is set and unset by ``customer.profile_updated`` with ``key_person``; the
last counted update that names it decides, from its ``occurred_at`` on; an
update that names other fields only leaves it as it was; a voided update
counts until the correction is recorded (RULES §6).
"""

from __future__ import annotations

from tests.factories import correction, event, registered
from tests.support.instants import utc

REGISTERED = "2025-01-01T09:00:00+08:00"
SET = "2025-03-01T10:00:00+08:00"
UNSET = "2025-06-01T10:00:00+08:00"


def profile(at: str, **data: object) -> dict:
    return event("customer.profile_updated", "C1", at, data)


def flag(branch, as_of: str, known_at: str | None = None) -> bool:
    return branch.state(as_of=as_of, known_at=known_at).key_person


def test_a_customer_is_not_a_key_person_from_registration_until_an_update_says_so(branch):
    branch.accept(registered(at=REGISTERED))
    state = branch.state(as_of=REGISTERED)
    assert state.key_person is False
    assert state.profile.key_person_since is None
    assert state.to_json()["key_person"] is False


def test_the_flag_is_set_from_the_instant_of_the_update_that_sets_it(branch):
    update = profile(SET, key_person=True)
    branch.accept(registered(at=REGISTERED), update)
    assert flag(branch, "2025-03-01T09:59:59.999999+08:00") is False
    assert flag(branch, SET) is True
    state = branch.state(as_of=SET)
    assert state.profile.key_person_since == utc(SET)
    assert str(state.profile.key_person_event_id) == update["event_id"]
    assert state.to_json()["key_person"] is True


def test_the_flag_is_unset_from_the_instant_of_the_update_that_unsets_it(branch):
    branch.accept(registered(at=REGISTERED), profile(SET, key_person=True), profile(UNSET, key_person=False))
    assert flag(branch, "2025-06-01T09:59:59.999999+08:00") is True
    assert flag(branch, UNSET) is False
    assert branch.state(as_of=UNSET).profile.key_person_since == utc(UNSET)


def test_an_update_of_other_fields_leaves_the_flag_and_its_since_as_they_were(branch):
    branch.accept(
        registered(at=REGISTERED),
        profile(SET, key_person=True),
        profile(UNSET, occupation="teacher"),
        profile("2025-07-01T10:00:00+08:00", key_person=True),
    )
    state = branch.state(as_of="2025-08-01T00:00:00+08:00")
    assert state.key_person is True
    assert state.profile.key_person_since == utc(SET)  # setting it again changes nothing


def test_a_late_update_counts_at_its_business_time_whatever_the_arrival_order(branch):
    branch.accept(registered(at=REGISTERED), profile(UNSET, key_person=False))
    branch.accept(profile(SET, key_person=True))  # arrives after, happened before
    assert flag(branch, "2025-02-28T00:00:00+08:00") is False
    assert flag(branch, SET) is True
    assert flag(branch, UNSET) is False


def test_as_known_before_a_correction_the_voided_update_still_sets_the_flag(branch):
    update = profile(SET, key_person=True)
    branch.recording_at("2025-03-01T10:00:00+08:00").accept(registered(at=REGISTERED), update)
    branch.recording_at("2025-04-01T09:00:00+08:00").accept(
        correction(update["event_id"], at="2025-04-01T09:00:00+08:00")
    )
    as_of = "2025-05-01T00:00:00+08:00"
    assert flag(branch, as_of, known_at="2025-04-01T08:59:59.999999+08:00") is True
    assert flag(branch, as_of, known_at="2025-04-01T09:00:00+08:00") is False
    assert flag(branch, SET, known_at="2025-04-01T09:00:00+08:00") is False  # voided at every business time


def test_state_json_carries_the_flag_and_explain_json_since_when(branch):
    from timeline.application.views import explanation_json, state_json

    update = profile(SET, key_person=True)
    branch.accept(registered(at=REGISTERED), update)
    state = branch.state(as_of=UNSET)
    assert state_json(state)["key_person"] is True
    assert explanation_json(state)["key_person_explained"] == {
        "key_person": True,
        "since": "2025-03-01T02:00:00Z",
        "event_id": update["event_id"],
    }


def test_a_fold_grown_event_by_event_gives_the_profile_of_a_fold_from_scratch(branch):
    """The reader grows its cached fold by each new event (``Projection.extended``): the profile fold must copy."""
    from tests.support.feedback import filed, greeting, resolved, survey
    from timeline.application.states import StateReader
    from timeline.projections.state import customer_state

    reader = StateReader(branch.engine.store, branch.engine.policy)
    now = utc("2030-06-01T00:00:00Z")
    seen = []
    for e in (
        registered(at=REGISTERED),
        profile(SET, key_person=True),
        survey("C1", "2025-03-02T09:00:00+08:00", 5),
        filed("C1", "2025-03-03T09:00:00+08:00", "K1"),
        greeting("C1", "2025-03-04T09:00:00+08:00"),
        resolved("C1", "2025-03-05T09:00:00+08:00", "K1", satisfied=False),
        profile(UNSET, key_person=False),
    ):
        branch.accept(e)
        seen.append(reader.state("C1", now, now).profile)
    history = reader.history("C1")
    assert seen[-1] == customer_state(history, branch.engine.policy, now, now).profile
    assert [p.key_person for p in seen] == [False, True, True, True, True, True, False]
    assert [len(p.surveys) for p in seen] == [0, 0, 1, 1, 1, 1, 1]
    assert seen[3].complaints[0].resolved_at is None and seen[5].complaints[0].satisfied is False
    assert seen[4].last_contact_at == utc("2025-03-04T09:00:00+08:00")
