"""How --as-of and --known-at are read."""

from __future__ import annotations

import datetime as dt

import pytest

from timeline.errors import TimelineError
from timeline.instants import parse_instant

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
