"""Upcasting: an older schema_version of an event is lifted to the current model."""

from __future__ import annotations

import pytest

from tests.factories import visit
from timeline.domain import upcasting
from timeline.domain.errors import RejectedEvent
from timeline.domain.events import parse_event


@pytest.fixture
def visit_v2(monkeypatch):
    """Pretend visit.recorded v1 named its purpose 'topic' and v2 is current."""
    monkeypatch.setattr(upcasting, "UPCASTERS", {})
    monkeypatch.setattr(upcasting, "CURRENT_VERSIONS", {})

    @upcasting.register("visit.recorded", 1)
    def rename_topic(raw):
        data = dict(raw["data"])
        data["purpose"] = data.pop("topic")
        return {**raw, "data": data}

    return rename_topic


def test_an_event_without_upcasters_passes_through_unchanged():
    raw = visit()
    assert upcasting.upcast(raw) is raw


def test_an_old_version_is_lifted_step_by_step(visit_v2):
    old = visit()
    old["data"] = {"channel": "branch", "topic": "annual review"}
    lifted = upcasting.upcast(old)
    assert lifted["schema_version"] == 2
    assert lifted["data"] == {"channel": "branch", "purpose": "annual review"}


def test_a_version_newer_than_the_engine_knows_is_rejected():
    raw = {**visit(), "schema_version": 9}
    with pytest.raises(RejectedEvent, match="schema_version 9 of visit.recorded is newer than this engine knows"):
        parse_event(raw)
