"""Operations: ``timeline status`` and ``timeline rebuild summary`` on a real broker and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.consumers.pipeline import (
    NOW,
    assert_read_model_exact,
    consume,
    group_of,
    ingest,
    pg_engine,
    relay_once,
    scalar,
    timeline,
)
from tests.consumers.test_summary import branch_events
from tests.factories import deposit, registered
from timeline.consumers.readmodels import summary_queries
from timeline.consumers.readmodels.rebuild import chunks_of, rebuild


def _status(pg_url: str, bootstrap: str, topic: str) -> dict[str, Any]:
    done = timeline("status", "--store", pg_url, "--db", pg_url, "--bootstrap", bootstrap, "--topic", topic, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.timeout(120)
def test_status_shows_the_head_the_relay_position_and_each_groups_lag(pg_url, kafka_broker, topic):
    group = group_of(topic)
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(10, 1, seed=2))
        head = engine.store.head_position()
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic)

        report = _status(pg_url, kafka_broker.bootstrap, topic)
        assert report["store"]["head"] == head
        assert [(r["name"], r["topic"], r["position"], r["behind"]) for r in report["store"]["relays"]] == [
            ("default", topic, head, 0)
        ]
        assert report["topics"][topic]["messages"] == head
        [g] = [g for g in report["groups"] if g["group"] == group]
        assert g["lag"] == 0 and g["kind"] == "summary"
        assert sum(p["saved"] for p in g["partitions"]) == head
        assert all(p["committed"] == p["saved"] == p["end"] for p in g["partitions"])  # Kafka was told too
        assert report["read_model"]["summary"]["customers"] == 10

        more = [registered(f"N{i}", at="2025-12-01T09:00:00+08:00") for i in range(7)]
        ingest(engine, more + [deposit(f"N{i}", at="2025-12-02T09:00:00+08:00") for i in range(7)])
        relay_once(engine, kafka_broker, topic)  # published, not consumed: the group lags by 14
        ingest(engine, [deposit("N0", at="2025-12-03T09:00:00+08:00")])  # stored, not published
        report = _status(pg_url, kafka_broker.bootstrap, topic)
        assert report["store"]["head"] == engine.store.head_position()
        assert report["store"]["relays"][0]["behind"] == 1
        published = report["store"]["relays"][0]["position"]
        [g] = [g for g in report["groups"] if g["group"] == group]
        assert g["lag"] == 14 and sum(p["lag"] for p in g["partitions"]) == 14

    text = timeline("status", "--store", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic)
    assert text.returncode == 0, text.stderr
    assert f"group {group}: lag 14" in text.stdout
    assert re.search(rf"^default +{topic} +{published} +1 *$", text.stdout, re.M), text.stdout  # one position behind


@pytest.mark.timeout(120)
def test_rebuild_from_the_store_swaps_atomically_while_queries_answer_and_the_consumer_goes_on(
    pg_url, kafka_broker, topic
):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(40, 2, seed=4))
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic)
        customers = len(assert_read_model_exact(engine, pg_url))
        # Damage the view: the rebuild puts it right.
        with psycopg.connect(pg_url) as conn:
            conn.execute(
                "UPDATE customer_summary SET tier = 'private'"
                " WHERE customer_id IN (SELECT min(customer_id) FROM customer_summary)"
            )
            conn.execute("DELETE FROM summary_tier_moves")

        answers: list[int] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def query_all_the_time() -> None:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                while not stop.is_set():
                    try:
                        answers.append(len(summary_queries.list_customers(conn)))
                    except BaseException as exc:  # noqa: BLE001 - the test reports it
                        failures.append(exc)
                        return

        def meanwhile() -> None:
            # The consumer applies new events while the rebuild runs: they must survive the swap.
            ingest(
                engine,
                [registered("LATE", at="2025-12-20T09:00:00+08:00"), deposit("LATE", at="2025-12-21T09:00:00+08:00")],
            )
            relay_once(engine, kafka_broker, topic)
            consume(pg_url, kafka_broker, topic)
            during.append(len(answers))
            time.sleep(0.3)

        during: list[int] = []
        reader = threading.Thread(target=query_all_the_time)
        reader.start()
        try:
            time.sleep(0.2)
            result = rebuild(pg_url, "store", store_url=pg_url, clock=lambda: NOW, before_swap=meanwhile)
            time.sleep(0.2)
        finally:
            stop.set()
            reader.join(30)
        assert not failures, failures[:1]
        assert result.customers == customers and result.merged == 1
        assert during and during[0] > 0  # queries answered during the rebuild...
        assert set(answers) <= {customers, customers + 1} and answers[-1] == customers + 1  # ...never a partial table
        assert len(answers) > during[0]
        rows = assert_read_model_exact(engine, pg_url)
        assert "LATE" in rows
        assert scalar(pg_url, "SELECT count(*) FROM summary_tier_moves") > 0
        assert scalar(
            pg_url, "SELECT to_regclass('customer_summary_new') IS NULL AND to_regclass('customer_summary_old') IS NULL"
        )
        assert scalar(pg_url, "SELECT generation FROM summary_meta") == 1

        # The consumer carries on over the rebuilt tables (a new event, and the repeats it finds, once).
        ingest(engine, [deposit("LATE", at="2025-12-22T09:00:00+08:00")])
        relay_once(engine, kafka_broker, topic)
        after = consume(pg_url, kafka_broker, topic)
        assert after.stats.applied == 1
        assert_read_model_exact(engine, pg_url)


@pytest.mark.timeout(120)
def test_rebuild_from_the_topic_twice_with_the_cli(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(20, 1, seed=6))
        relay_once(engine, kafka_broker, topic)
        relay_once(engine, kafka_broker, topic, name="again")  # repeats on the topic: dropped by the rebuild too
        consume(pg_url, kafka_broker, topic)
        with psycopg.connect(pg_url) as conn:
            conn.execute("TRUNCATE customer_summary, summary_tier_moves")
        for _ in range(2):  # twice: the second finds the first's tables and index names
            done = timeline(
                "rebuild", "summary", "--from", "topic", "--db", pg_url, "--bootstrap", kafka_broker.bootstrap,
                "--topic", topic, "--group", group_of(topic), "--now", "2026-01-01T00:00:01Z", "--json",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            result = json.loads(done.stdout)
            assert result["events"] == engine.store.head_position() and result["customers"] == 20
            assert_read_model_exact(engine, pg_url)
        with psycopg.connect(pg_url) as conn:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes"
                    " WHERE tablename LIKE 'summary%' OR tablename LIKE 'customer_summary%'"
                )
            }
        assert not [n for n in names if "_new" in n], names
        assert {"customer_summary_pkey", "customer_summary_tier", "summary_events_customer"} <= names

        missing = timeline(
            "rebuild",
            "summary",
            "--from",
            "topic",
            "--db",
            pg_url,
            "--bootstrap",
            kafka_broker.bootstrap,
            "--topic",
            topic,
            "--group",
            "nobody",
        )
        assert missing.returncode == 2 and "applied nothing" in missing.stderr


def _per_partition(pg_url: str, topic: str) -> dict[int, int]:
    """Messages per partition, as the summary consumer that has read them all saved them."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT partition, next_offset FROM summary_offsets WHERE topic = %s", (topic,))
        return dict(rows.fetchall())


@pytest.mark.timeout(120)
def test_status_counts_a_partition_without_a_saved_offset_from_its_start(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(12, 1, seed=6))
        head = engine.store.head_position()
        relay_once(engine, kafka_broker, topic)
        consume(pg_url, kafka_broker, topic)
    per_partition = _per_partition(pg_url, topic)
    assert len(per_partition) == 3 and sum(per_partition.values()) == head
    # The read model has saved no offset for partition 1 yet: all of it is unread.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM summary_offsets WHERE topic = %s AND partition = 1", (topic,))
    # A plain Kafka group that committed half of partition 0 and nothing else.
    partial = f"partial-{topic}"
    committer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=partial, enable_auto_commit=False)
    try:
        committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(per_partition[0] // 2, "", -1)})
    finally:
        committer.close()

    report = _status(pg_url, kafka_broker.bootstrap, topic)
    [summary] = [g for g in report["groups"] if g["group"] == group_of(topic)]
    assert summary["lag"] == per_partition[1]
    assert [(p["partition"], p["saved"], p["saved_lag"]) for p in summary["partitions"]] == [
        (0, per_partition[0], 0),
        (1, None, per_partition[1]),
        (2, per_partition[2], 0),
    ]
    [other] = [g for g in report["groups"] if g["group"] == partial]
    assert other["kind"] is None and [p["partition"] for p in other["partitions"]] == [0, 1, 2]
    assert other["lag"] == head - per_partition[0] // 2
    assert all(p["start"] == 0 for p in other["partitions"])


@pytest.mark.timeout(60)
def test_status_with_the_broker_unreachable_says_so_and_exits_1(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(3, 1, seed=7))
        head = engine.store.head_position()
    with kafka_broker.paused_for():
        done = timeline(
            "status", "--store", pg_url, "--db", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
            timeout=30,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"store head position: {head}" in done.stdout
    assert f"Kafka broker at {kafka_broker.bootstrap} not reachable within 4 s" in done.stdout
    assert "Traceback" not in done.stderr


def test_status_of_a_store_that_does_not_exist_says_so_and_creates_nothing(tmp_path, kafka_broker):
    path = tmp_path / "typo.db"
    done = timeline("status", "--store", f"sqlite:///{path}", "--bootstrap", kafka_broker.bootstrap, "--json")
    assert done.returncode == 2, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["store"] == {"error": f"no timeline store at sqlite:///{path}"} and report["missing_store"]
    assert not path.exists()


def test_status_with_the_store_unreachable_names_it_and_exits_1(kafka_broker):
    unreachable = "postgresql://postgres@127.0.0.1:1/nothing"
    done = timeline(
        "status", "--store", unreachable, "--db", unreachable, "--bootstrap", kafka_broker.bootstrap,
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert re.search(r"^store +unreachable: cannot reach PostgreSQL at 127.0.0.1:1/nothing", done.stdout, re.M)
    assert re.search(r"^read model +unreachable: cannot reach the read-model database", done.stdout, re.M)


def test_chunks_hold_about_the_asked_events_and_never_split_a_customer():
    counts = [("A", 3), ("B", 4), ("C", 10), ("D", 1), ("E", 1), ("F", 2)]
    assert list(chunks_of(counts, 5)) == [["A"], ["B"], ["C"], ["D", "E", "F"]]
    assert list(chunks_of(counts, 100)) == [["A", "B", "C", "D", "E", "F"]]
    assert list(chunks_of([], 5)) == []


@pytest.mark.timeout(120)
def test_a_rebuild_over_more_customers_than_one_chunk_gives_the_rows_of_state_all(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(30, 1, seed=8))
        head = engine.store.head_position()
        for source in ("store", "topic"):
            if source == "topic":
                relay_once(engine, kafka_broker, topic)
                consume(pg_url, kafka_broker, topic)
            chunks: list[int] = []

            def computed(phase: str, done: int, total: int | None, chunks: list[int] = chunks) -> None:
                if phase == "computing states":
                    chunks.append(done)

            result = rebuild(
                pg_url,
                source,
                store_url=pg_url,
                bootstrap=kafka_broker.bootstrap,
                topic=topic,
                group=group_of(topic),
                clock=lambda: NOW,
                chunk_events=40,
                progress=computed,
            )
            assert result.customers == 30 and result.events == head
            assert len(chunks) > 5 and chunks == sorted(chunks) and chunks[-1] == 30, chunks
            assert scalar(pg_url, "SELECT count(*) FROM summary_events") == head
            assert_read_model_exact(engine, pg_url)
