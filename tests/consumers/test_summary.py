"""``timeline consume summary`` against a real broker (Tansu) and PostgreSQL.

Each test ingests into a PostgreSQL store of its own, publishes with the
relay, consumes into the read model in the same database, and checks the
read model against ``timeline state --all`` (``StateReader.all_states``) for
every customer, as of the same instant.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.consumers.pipeline import (
    NOW,
    assert_read_model_exact,
    consume,
    expected,
    group_of,
    ingest,
    pg_engine,
    relay_once,
    scalar,
    timeline,
)
from tests.factories import deposit, registered, visit, withdrawal
from tests.kafka import read_topic
from timeline.consumers.readmodels import database, projector
from timeline.consumers.readmodels.summary import SummaryConsumer
from timeline.domain.recorded import iso
from timeline.projections import folding
from timeline.synthetic.generate import generate_branch


def branch_events(customers: int = 40, years: float = 2, seed: int = 3) -> list[dict[str, Any]]:
    """A realistic branch (deposits, withdrawals, complaints, redemptions, corrections…) ending before the ingest."""
    return list(generate_branch(customers, years, seed, dt.date(2025, 12, 31)))


@pytest.mark.timeout(120)
def test_end_to_end_the_read_model_equals_state_all_and_answers_the_queries(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events())
        published = relay_once(engine, kafka_broker, topic)
        consumer = consume(pg_url, kafka_broker, topic)
        assert consumer.stats.applied == published == engine.store.head_position()
        assert consumer.stats.duplicates == consumer.stats.dead_letters == consumer.stats.errors == 0
        rows = assert_read_model_exact(engine, pg_url)
        states = {s.customer_id: s for s in _states(engine, NOW)}

    assert len(rows) == 40
    tiers = {r["tier"] for r in rows.values()}
    stages = {r["lifecycle"] for r in rows.values()}
    assert len(tiers) > 1 and len(stages) > 1, (tiers, stages)

    env = {"TIMELINE_READ_DB": pg_url}
    tier = sorted(tiers)[0]
    listed = _json_lines(timeline("summary", "list", "--tier", tier, "--json", env=env))
    assert [r["customer_id"] for r in listed] == sorted(c for c, r in rows.items() if r["tier"] == tier)
    assert all(r["as_of"] == iso(NOW) for r in listed)
    branch = rows[min(rows)]["branch_id"]
    listed = _json_lines(
        timeline("summary", "list", "--branch", branch, "--lifecycle", "established", "--json", env=env)
    )
    assert [r["customer_id"] for r in listed] == sorted(
        c for c, r in rows.items() if r["branch_id"] == branch and r["lifecycle"] == "established"
    )

    at_risk = _json_lines(timeline("summary", "at-risk", "--json", env=env))
    assert [r["customer_id"] for r in at_risk] == sorted(c for c, r in rows.items() if r["lifecycle"] == "at_risk")
    for r in at_risk:
        stage = states[r["customer_id"]].lifecycle
        assert (r["rule"], r["reason"], r["event_ids"]) == (stage.rule, stage.reason, [str(e) for e in stage.event_ids])

    start, end = "2024-06-01", "2025-06-30"
    moves = _json_lines(timeline("summary", "moves", "--from", start, "--to", end, "--json", env=env))
    lo = dt.datetime(2024, 5, 31, 16, tzinfo=dt.UTC)  # 2024-06-01 00:00 in Asia/Shanghai
    hi = dt.datetime(2025, 6, 30, 16, tzinfo=dt.UTC)
    want = sorted(
        (iso(c.at), s.customer_id, c.from_tier, c.to_tier, c.rule)
        for s in states.values()
        for c in s.tier.changes
        if lo <= c.at < hi
    )
    assert want, "the generated branch has tier moves in that period"
    assert [(m["at"], m["customer_id"], m["from"], m["to"], m["rule"]) for m in moves] == want
    downs = _json_lines(
        timeline("summary", "moves", "--from", start, "--to", end, "--direction", "down", "--json", env=env)
    )
    assert downs == [m for m in moves if m["direction"] == "down"]


@pytest.mark.timeout(120)
def test_repeats_on_the_topic_are_applied_once(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(15, 1, seed=5))
        head = engine.store.head_position()
        relay_once(engine, kafka_broker, topic)
        relay_once(engine, kafka_broker, topic, name="again")  # a second relay: everything twice
        first = consume(pg_url, kafka_broker, topic)
        assert (first.stats.applied, first.stats.duplicates) == (head, head)
        assert_read_model_exact(engine, pg_url)

        relay_once(engine, kafka_broker, topic, name="third")  # and a third time, after the consumer caught up
        second = consume(pg_url, kafka_broker, topic)
        assert (second.stats.applied, second.stats.duplicates) == (0, head)
        assert scalar(pg_url, "SELECT count(*) FROM summary_events") == head
        assert_read_model_exact(engine, pg_url)


@pytest.mark.timeout(180)
def test_a_running_consumer_grows_its_folds_and_stays_exact_as_events_keep_arriving(
    pg_url, kafka_broker, topic, monkeypatch
):
    """The same consumer across rounds of arrivals: new activity extends the cached folds; late events and
    corrections (the generated branch has both) fold again; after each round the view equals state --all."""
    reuse: list[bool] = []
    later_of = folding._later

    def watched(*args: Any) -> Any:
        later = later_of(*args)
        reuse.append(later is not None)
        return later

    monkeypatch.setattr(folding, "_later", watched)
    events = branch_events(30, 2, seed=11)
    assert {"correction.recorded"} <= {e["type"] for e in events}
    consumer = SummaryConsumer(
        pg_url, kafka_broker.bootstrap, topic, group=group_of(topic), clock=lambda: NOW, tick_interval=0
    )
    try:
        with pg_engine(pg_url) as engine:
            rounds = 5
            for part in range(rounds):
                ingest(engine, events[part * len(events) // rounds : (part + 1) * len(events) // rounds])
                relay_once(engine, kafka_broker, topic)
                consumer.run(until_caught_up=True)
                assert consumer.stats.errors == 0
                assert_read_model_exact(engine, pg_url)
    finally:
        consumer.close()
    assert True in reuse and False in reuse, "both paths: folds extended, and folded again"


@pytest.mark.timeout(180)
def test_behind_a_backlog_larger_than_its_cache_each_customer_is_folded_about_once(
    pg_url, kafka_broker, topic, monkeypatch
):
    """Full polls leave the customers the cache does not hold pending; they are folded from the copy once the
    polls come back short: not again on every batch, and the cache stays within its bound."""
    folds: dict[str, int] = {}
    fold = projector.fold

    def counted(history: Any, *args: Any) -> Any:
        folds[history[0].customer_id] = folds.get(history[0].customer_id, 0) + 1
        return fold(history, *args)

    monkeypatch.setattr(projector, "fold", counted)
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(30, 1.5, seed=12))
        head = engine.store.head_position()
        relay_once(engine, kafka_broker, topic)
        consumer = SummaryConsumer(
            pg_url, kafka_broker.bootstrap, topic, group=group_of(topic), clock=lambda: NOW, tick_interval=0,
            max_batch=100,
        )  # fmt: skip
        consumer.cache.limit = 200
        try:
            consumer.run(until_caught_up=True)
            assert consumer.stats.applied == head and consumer.stats.batches > 10 and not consumer.pending
            assert consumer.cache.size <= consumer.cache.limit
        finally:
            consumer.close()
        assert_read_model_exact(engine, pg_url)
        assert scalar(pg_url, "SELECT count(*) FROM summary_streams WHERE recheck_at = '-infinity'") == 0
    assert len(folds) == 30 and sum(folds.values()) <= 2 * 30, folds


@pytest.mark.timeout(120)
def test_customers_a_stopped_consumer_left_pending_are_evaluated_by_tick(pg_url, kafka_broker, topic):
    class NoCatchUp(SummaryConsumer):
        def catch_up(self, seconds: float = 0) -> int:
            self.pending = False  # as if stopped before it caught up
            return 0

    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(20, 1, seed=13))
        relay_once(engine, kafka_broker, topic)
        consumer = consume(pg_url, kafka_broker, topic, cls=NoCatchUp, max_batch=50)
        pending = scalar(pg_url, "SELECT count(*) FROM summary_streams WHERE recheck_at = '-infinity'")
        assert consumer.stats.batches > 5 and pending > 0
        assert scalar(pg_url, "SELECT count(*) FROM customer_summary") < 20
        done = timeline("tick", "--db", pg_url, "--now", iso(NOW), "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["reevaluated"]["summary"] >= pending
        assert_read_model_exact(engine, pg_url)


@pytest.mark.timeout(120)
def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_consumer_continues(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, [registered(c, at="2025-01-01T09:00:00+08:00") for c in ("C1", "C2", "C3")])
        relay_once(engine, kafka_broker, topic)
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
        try:
            for key, value in ((b"C1", b"{not json"), (b"C2", b'{"specversion": "0.3", "id": "x"}')):
                producer.send(topic, key=key, value=value, headers=[("content-type", b"application/json")])
            producer.flush(10)
        finally:
            producer.close()
        later = [deposit(c, at="2025-02-01T10:00:00+08:00", amount="80000.00") for c in ("C1", "C2", "C3")]
        ingest(engine, later + [visit("C1", at="2025-03-01T10:00:00+08:00")])
        relay_once(engine, kafka_broker, topic)

        consumer = consume(pg_url, kafka_broker, topic)
        assert consumer.stats.dead_letters == 2 and consumer.stats.applied == engine.store.head_position()
        rows = assert_read_model_exact(engine, pg_url)
        assert {r["tier"] for r in rows.values()} == {"affluent"}  # events after the poison were applied

        dead = read_topic(kafka_broker.bootstrap, topic + ".dlq")
        assert sorted(r.value for r in dead) == sorted([b"{not json", b'{"specversion": "0.3", "id": "x"}'])
        for r in dead:
            headers = dict(r.headers)
            assert headers["x-dlq-topic"].decode() == topic
            assert headers["x-dlq-group"].decode() == group_of(topic)
            assert headers["content-type"] == b"application/json"  # the original headers are kept
        reasons = {r.value: dict(r.headers)["x-dlq-reason"].decode() for r in dead}
        assert reasons[b"{not json"].startswith("not JSON")
        assert "not a CloudEvents 1.0" in reasons[b'{"specversion": "0.3", "id": "x"}']
        assert scalar(pg_url, "SELECT count(*) FROM summary_dead_letters WHERE reason LIKE 'not JSON%%'") == 1

        again = consume(pg_url, kafka_broker, topic)  # a restart does not dead-letter them again
        assert again.stats.messages == again.stats.dead_letters == 0
        assert len(read_topic(kafka_broker.bootstrap, topic + ".dlq")) == 2


@pytest.mark.timeout(120)
def test_tick_updates_rows_whose_next_change_has_come_without_new_events(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(
            engine,
            [
                registered("C1", at="2025-06-01T09:00:00+08:00"),
                deposit("C1", at="2025-06-02T09:00:00+08:00", amount="600000.00"),
                registered("C2", at="2025-06-01T09:00:00+08:00"),
                deposit("C2", at="2025-06-02T09:00:00+08:00", amount="70000.00"),
                withdrawal("C2", at="2025-12-20T09:00:00+08:00", amount="69000.00"),
                *branch_events(20, 1, seed=8),
            ],
        )
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic)
        rows = assert_read_model_exact(engine, pg_url)
        assert rows["C2"]["tier"] == "affluent" and rows["C2"]["lifecycle"] == "at_risk"

        later = NOW + dt.timedelta(days=120)  # C2's downgrade is due 90 days after the withdrawal
        stale = scalar(pg_url, "SELECT count(*) FROM customer_summary WHERE next_change_at <= %s", later)
        assert stale > 2
        done = timeline("tick", "--db", pg_url, "--now", iso(later), "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["reevaluated"]["summary"] >= stale
        rows = assert_read_model_exact(engine, pg_url, later)
        assert rows["C2"]["tier"] == "mass"
        moves = _json_lines(
            timeline(
                "summary",
                "moves",
                "--from",
                "2026-03-01",
                "--to",
                "2026-04-30",
                "--json",
                env={"TIMELINE_READ_DB": pg_url},
            )
        )
        assert [(m["customer_id"], m["from"], m["to"]) for m in moves if m["customer_id"] == "C2"] == [
            ("C2", "affluent", "mass")
        ]
        assert scalar(pg_url, "SELECT count(*) FROM customer_summary WHERE next_change_at <= %s", later) == 0

        # The consumer ticks on its own timer too.
        much_later = later + dt.timedelta(days=400)
        ticking = SummaryConsumer(
            pg_url, kafka_broker.bootstrap, topic, group=group_of(topic), clock=lambda: much_later, tick_interval=0.01
        )
        try:
            ticking.run(until_caught_up=True)
        finally:
            ticking.close()
        assert ticking.stats.ticked > 0
        assert_read_model_exact(engine, pg_url, much_later)
        assert expected(engine, much_later) != expected(engine, later)


def _states(engine: Any, now: dt.datetime) -> list[Any]:
    from timeline.application.states import StateReader

    return list(StateReader(engine.store, engine.policy).all_states(now, now))


def _json_lines(done: subprocess.CompletedProcess) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_the_read_model_refuses_a_non_postgres_database(tmp_path):
    done = timeline("summary", "list", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2 and "PostgreSQL" in done.stderr
    assert database.is_postgres("postgresql://u@h/db")
