"""``timeline consume alerts``: an alert when a customer becomes at-risk or drops a tier, with the explanation."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from tests.consumers.pipeline import consume, group_of, ingest, pg_engine, relay_once, scalar, timeline
from tests.factories import deposit, registered, visit, withdrawal
from tests.support.instants import utc
from timeline.consumers.readmodels.alerts import AlertsConsumer
from timeline.domain.recorded import iso


@pytest.mark.timeout(120)
def test_alerts_on_becoming_at_risk_and_on_a_tier_drop_once_each_with_the_explanation(
    pg_url, kafka_broker, topic, caplog
):
    caplog.set_level(logging.WARNING, logger="timeline.consumers.readmodels.alerts")
    group = group_of(topic, "alerts")
    with pg_engine(pg_url) as engine:
        # Phase 1: C1 affluent (100,000 held since January), C2 steady; neither at risk.
        ingest(
            engine,
            [
                registered("C1", at="2025-01-01T09:00:00+08:00", branch_id="BR007", relationship_manager="RM042"),
                deposit("C1", at="2025-01-02T09:00:00+08:00", amount="100000.00"),
                visit("C1", at="2025-06-15T10:00:00+08:00"),
                registered("C2", at="2025-01-01T09:00:00+08:00"),
                deposit("C2", at="2025-01-02T09:00:00+08:00", amount="20000.00"),
                visit("C2", at="2025-06-15T10:00:00+08:00"),
            ],
            at=utc("2025-07-01T00:00:00+00:00"),
        )
        relay_once(engine, kafka_broker, topic)
        first = consume(pg_url, kafka_broker, topic, now=utc("2025-07-01T00:00:01+00:00"), cls=AlertsConsumer)
        assert not first.emitted

        # Phase 2: C1 takes out 95,000: at risk at once (rule 3b), its downgrade pending for 90 days.
        [outcome] = [
            o
            for o in engine.ingestor(clock=lambda: utc("2025-08-02T00:00:00+00:00")).ingest(
                [(1, withdrawal("C1", at="2025-08-01T10:00:00+08:00", amount="95000.00"))]
            )
        ]
        assert outcome.status == "accepted"
        withdrawal_id = str(outcome.event_id)
        relay_once(engine, kafka_broker, topic)
        second = consume(pg_url, kafka_broker, topic, now=utc("2025-08-02T00:00:01+00:00"), cls=AlertsConsumer)

    [at_risk] = second.emitted
    assert (at_risk.customer_id, at_risk.kind, at_risk.from_value, at_risk.to_value) == (
        "C1",
        "at_risk",
        "new",
        "at_risk",
    )
    assert at_risk.at == utc("2025-08-02T00:00:01+00:00")
    assert (at_risk.branch_id, at_risk.relationship_manager) == ("BR007", "RM042")
    assert at_risk.explanation["aum"] == "5000.00" and "50%" in at_risk.explanation["reason"], at_risk.explanation
    assert withdrawal_id in at_risk.event_ids
    logged = [json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert logged == [at_risk.to_json()]

    # Time alone: 90 days after the drop the downgrade is due; `timeline tick` raises the alert.
    tick = timeline("tick", "--db", pg_url, "--consumer", "alerts", "--now", "2025-11-15T00:00:00Z", "--json")
    assert tick.returncode == 0, tick.stderr[-3000:]
    assert "ALERT" in tick.stderr and '"tier_drop"' in tick.stderr
    listed = [json.loads(line) for line in timeline("alerts", "--db", pg_url, "--json").stdout.splitlines()]
    assert [(a["alert"], a["customer_id"]) for a in listed] == [("at_risk", "C1"), ("tier_drop", "C1")]
    drop = listed[1]
    assert (drop["from"], drop["to"], drop["at"]) == (
        "affluent",
        "mass",
        iso(utc("2025-08-01T10:00:00+08:00") + dt.timedelta(days=90)),
    )
    assert drop["explanation"]["rule"] == "downgrade after grace period"
    assert "stayed below for 90 days" in drop["explanation"]["reason"]
    assert drop["event_ids"] == [withdrawal_id]

    # Exactly once: another tick, and a consumer run over the same topic, raise nothing new.
    again = AlertsConsumer(
        pg_url, kafka_broker.bootstrap, topic, group=group, clock=lambda: utc("2025-11-15T00:00:00Z")
    )
    try:
        assert again.tick() >= 0
        again.run(until_caught_up=True)
    finally:
        again.close()
    assert not again.emitted
    assert scalar(pg_url, "SELECT count(*) FROM alerts") == 2
    assert scalar(pg_url, "SELECT lifecycle FROM alerts_watch WHERE customer_id = 'C1'") == "established"


@pytest.mark.timeout(120)
def test_a_customer_first_seen_at_risk_with_an_old_tier_drop_raises_both(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(
            engine,
            [
                registered("C1", at="2024-01-01T09:00:00+08:00"),
                deposit("C1", at="2024-01-02T09:00:00+08:00", amount="600000.00"),
                withdrawal("C1", at="2024-06-01T09:00:00+08:00", amount="590000.00"),  # high_net_worth → mass
                deposit("C1", at="2024-12-01T09:00:00+08:00", amount="100.00"),
            ],
        )
        relay_once(engine, kafka_broker, topic)
        # As of the ingest: no activity for 13 months, at risk (3c); the downgrade was due on 2024-08-30.
        consumer = consume(pg_url, kafka_broker, topic, cls=AlertsConsumer)
    alerts = sorted(consumer.emitted, key=lambda a: a.kind)
    assert [(a.kind, a.from_value, a.to_value) for a in alerts] == [
        ("at_risk", None, "at_risk"),
        ("tier_drop", "high_net_worth", "mass"),
    ]
    assert "activity" in alerts[0].explanation["reason"], alerts[0].explanation
    assert alerts[1].at == utc("2024-06-01T09:00:00+08:00") + dt.timedelta(days=90)
