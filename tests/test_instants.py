"""How --as-of and --known-at are read."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import deposit, event, registered, visit
from timeline.domain.errors import TimelineError, UnknownCustomer
from timeline.domain.instants import EARLIEST, LATEST, parse_instant

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_absent_means_the_default():
    assert parse_instant(None, "Asia/Shanghai", NOW) == NOW


def test_an_instant_with_an_offset_is_taken_as_that_instant_in_utc():
    assert parse_instant("2025-03-31T08:00:00+08:00", "Asia/Shanghai", NOW) == dt.datetime(2025, 3, 31, tzinfo=dt.UTC)


def test_a_date_means_the_last_instant_of_that_day_in_the_policy_time_zone():
    assert parse_instant("2025-03-31", "Asia/Shanghai", NOW) == dt.datetime(
        2025, 3, 31, 15, 59, 59, 999999, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("text", ["2025-03-31T08:00:00", "yesterday", "2025-13-01"])
def test_naive_or_unreadable_instants_are_refused(text):
    with pytest.raises(TimelineError):
        parse_instant(text, "Asia/Shanghai", NOW)


def test_the_last_day_of_year_9999_ends_at_its_last_instant_in_the_policy_time_zone():
    assert parse_instant("9999-12-31", "Asia/Shanghai", NOW) == dt.datetime(
        9999, 12, 31, 15, 59, 59, 999999, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("9999-12-31T23:59:59-05:00", "Asia/Shanghai", LATEST),
        ("9999-12-31", "America/New_York", LATEST),
        ("0001-01-01T00:00:00+08:00", "Asia/Shanghai", EARLIEST),
        ("0001-01-01T00:00:00+23:59", "Asia/Shanghai", EARLIEST),
    ],
)
def test_an_instant_beyond_the_range_of_utc_is_its_nearest_end(text, zone, expected):
    assert parse_instant(text, zone, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T23:59:59+23:59",
        "0001-01-01",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+08:00",
        "0001-01-01T00:00:00-23:59",
        "2025-06-30T12:00:00+23:59",
    ],
)
def test_state_explain_and_followups_answer_at_any_readable_instant(branch, text):
    """As of and as known at the ends of time: an answer or "not registered", never an overflow."""
    from timeline.application.states import StateReader

    followup = event(
        "followup.scheduled",
        "C1",
        "2025-01-05T09:00:00+08:00",
        {"followup_id": "F1", "due_date": "2199-12-31", "reason": "call"},
    )
    branch.accept(registered(), deposit(amount="600000.00"), visit(), followup)
    reader = StateReader(branch.engine.store, branch.engine.policy)
    moment = parse_instant(text, branch.engine.policy.time_zone, NOW)
    for as_of, known_at in ((moment, branch.now), (branch.now, moment), (moment, moment)):
        try:
            state = reader.state("C1", as_of, known_at)
        except UnknownCustomer:
            assert as_of.year < 2025 or known_at < branch.now  # before it happened, or before it was recorded
            continue
        assert state.explain_json()["customer_id"] == "C1"
        [listed] = list(reader.all_states(as_of, known_at))
        assert [f.followup_id for f in listed.followups] == ["F1"]
