"""The summary read model under the store's policy versions (issue 13): after a publish its rows equal
``state --all`` again, on the real broker (Tansu) and PostgreSQL.

A version ``stricter`` (affluent from 80,000, silence 60 days) is published effective 2025-07-01 on a branch
of 40 customers, recorded just after the ingest and before the instant the views are evaluated at.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from tests.consumers.pipeline import (
    INGESTED_AT,
    NOW,
    assert_read_model_exact,
    consume,
    group_of,
    ingest,
    pg_engine,
    read_model,
    relay_once,
    scalar,
    timeline,
)
from tests.consumers.test_summary import branch_events
from tests.factories import deposit
from timeline.application.policy_store import PolicyStream
from timeline.consumers.readmodels import versions
from timeline.consumers.readmodels.rebuild import rebuild
from timeline.domain.policy import Policy, load_policy
from timeline.domain.recorded import iso
from timeline.engine import Engine

EFFECTIVE = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
PUBLISHED = INGESTED_AT + dt.timedelta(milliseconds=100)
LATER = INGESTED_AT + dt.timedelta(milliseconds=500)
"""Events ingested after the publish (still before ``NOW``)."""


def stricter() -> Policy:
    data = load_policy().model_dump(mode="json")
    data["id"] = "stricter"
    data["tier"]["tiers"][1]["threshold"] = "80000"
    data["lifecycle"]["silence_days"] = 60
    return Policy.model_validate(data)


def publish(engine: Engine) -> None:
    PolicyStream(engine.store, engine.policy).publish(stricter(), EFFECTIVE, PUBLISHED)


def pending(pg_url: str) -> int:
    return scalar(pg_url, "SELECT count(*) FROM summary_streams WHERE recheck_at = '-infinity'")


def folding_again(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == versions.__name__]


def changed(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    return {c for c in before if before[c] != after[c]}


@pytest.mark.timeout(180)
def test_after_a_publish_the_summary_rows_equal_state_all_with_and_without_new_events(
    pg_url, kafka_broker, topic, caplog
):
    caplog.set_level(logging.INFO, logger=versions.__name__)
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events())
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic, store_url=pg_url)
        before = assert_read_model_exact(engine, pg_url)

        publish(engine)  # no event: the next consumer's first transaction finds the version
        consume(pg_url, kafka_broker, topic, store_url=pg_url)
        after = assert_read_model_exact(engine, pg_url)
        assert folding_again(caplog) == ["summary: policy version 1 published: every customer is folded again"]
        assert len(changed(before, after)) >= 5, changed(before, after)
        assert scalar(pg_url, "SELECT entries FROM summary_policy") == 1
        assert pending(pg_url) == 0

        customer = min(after)
        ingest(engine, [deposit(customer, at="2025-12-31T09:00:00+08:00", amount="500.00")], at=LATER)
        relay_once(engine, kafka_broker, topic)
        caplog.clear()
        again = consume(pg_url, kafka_broker, topic, store_url=pg_url)
        assert_read_model_exact(engine, pg_url)
        assert again.stats.applied == 1 and again.stats.customers == 1
        assert folding_again(caplog) == []  # a restart finds the count it left: it folds nothing again


@pytest.mark.timeout(180)
def test_a_publish_seen_inside_a_batch_refolds_the_others_through_the_catch_up(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events())
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic, store_url=pg_url)
        publish(engine)
        ingest(engine, [deposit(min(read_model(pg_url)), at="2025-12-31T09:00:00+08:00", amount="500.00")], at=LATER)
        relay_once(engine, kafka_broker, topic)
        consumer = consume(pg_url, kafka_broker, topic, store_url=pg_url)
        assert consumer.stats.applied == 1
        assert_read_model_exact(engine, pg_url)
        assert pending(pg_url) == 0


@pytest.mark.timeout(180)
def test_consume_and_tick_on_the_command_line_fold_under_the_store_versions(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(customers=20))
        relay_once(engine, kafka_broker, topic)
        consumed = timeline(
            "consume", "summary", "--db", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
            "--once", "--now", iso(NOW), "--group", group_of(topic), "--tick-interval", "0",
        )  # fmt: skip
        assert consumed.returncode == 0, consumed.stderr[-3000:]
        before = assert_read_model_exact(engine, pg_url)

        publish(engine)
        ticked = timeline("tick", "--db", pg_url, "--now", iso(NOW), "--json")
        assert ticked.returncode == 0, ticked.stderr[-3000:]
        after = assert_read_model_exact(engine, pg_url)  # the read model's database is the store: its versions
        assert changed(before, after)


def test_consume_names_a_store_that_is_not_there(pg_url, kafka_broker, topic, tmp_path):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(customers=2))
        relay_once(engine, kafka_broker, topic)
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    run = timeline(
        "consume", "summary", "--db", pg_url, "--store", missing, "--bootstrap", kafka_broker.bootstrap,
        "--topic", topic, "--once", "--now", iso(NOW), "--group", group_of(topic),
    )  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1] == (
        f"timeline: error: no timeline store at {missing}, whose policy versions the read models fold under"
        " (--store or TIMELINE_DB)"
    )


@pytest.mark.timeout(180)
def test_a_rebuild_folds_under_the_store_versions_and_records_them(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(customers=20))
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic, store_url=pg_url)
        publish(engine)

        rebuild(pg_url, "store", store_url=pg_url, clock=lambda: NOW)
        assert_read_model_exact(engine, pg_url)
        assert scalar(pg_url, "SELECT entries FROM summary_policy") == 1

        rebuild(
            pg_url, "topic", bootstrap=kafka_broker.bootstrap, topic=topic, group=group_of(topic), clock=lambda: NOW
        )
        assert scalar(pg_url, "SELECT entries FROM summary_policy") == 0  # the base policy alone: no store given
        consume(pg_url, kafka_broker, topic, store_url=pg_url)  # finds a version the rows were not folded under
        assert_read_model_exact(engine, pg_url)
