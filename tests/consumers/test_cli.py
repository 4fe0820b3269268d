"""The read-model commands as an operator meets them: options, mistakes, wording, output at 80 columns."""

from __future__ import annotations

import json
import re

import pytest

from tests.consumers.pipeline import NOW, ingest, pg_engine, relay_once, timeline
from tests.consumers.test_summary import branch_events
from tests.factories import deposit, registered
from timeline.domain.recorded import iso

pytestmark = pytest.mark.timeout(120)


def _one_line_usage_error(done, *valid: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("timeline: error: ") and all(v in line for v in valid), line
    return line


@pytest.mark.parametrize(
    ("command", "valid"),
    [
        (["summary", "list", "--tier", "gold"], ["mass", "affluent", "high_net_worth", "private"]),
        (["summary", "list", "--lifecycle", "bogus"], ["prospect", "at_risk", "churned", "loyal"]),
        (["alerts", "--kind", "bogus"], ["at_risk", "tier_drop"]),
        (["tick", "--consumer", "bogus"], ["summary", "alerts", "all"]),
        (["summary", "moves", "--from", "2025-01-01", "--to", "2025-12-31", "--direction", "sideways"], ["up", "down"]),
    ],
)
def test_a_value_the_read_model_cannot_hold_is_a_usage_error_listing_the_valid_ones(pg_url, command, valid):
    _one_line_usage_error(timeline(*command, "--db", pg_url), *valid)


def test_every_read_model_of_the_registry_has_a_consume_command():
    from timeline.consumers.readmodels.registry import READ_MODELS

    done = timeline("consume", "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0
    for name, model in READ_MODELS.items():
        assert f" {name} " in done.stdout and model.description in done.stdout


def test_a_read_model_that_cannot_be_rebuilt_has_no_rebuild_command(pg_url):
    done = timeline("rebuild", "alerts", "--db", pg_url)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_the_summary_list_fits_80_columns_and_counts_in_words(pg_url):
    with pg_engine(pg_url) as engine:
        ingest(engine, branch_events(12, 1, seed=5))
    rebuilt = timeline("rebuild", "summary", "--store", pg_url, "--now", iso(NOW))
    assert rebuilt.returncode == 0, rebuilt.stderr
    listed = timeline("summary", "list", "--store", pg_url, env={"COLUMNS": "80"})  # the read model beside the store
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, listed.stdout
    assert lines[0].strip() == "12 customers"
    rows = json.loads(
        "[" + ",".join(timeline("summary", "list", "--store", pg_url, "--json").stdout.splitlines()) + "]"
    )
    for row in rows:  # ids and amounts whole, on one line each
        assert any(row["customer_id"] in line and row["aum"] in line for line in lines), row
    one = timeline("summary", "list", "--store", pg_url, "--limit", "1", env={"COLUMNS": "80"})
    assert one.stdout.splitlines()[0].strip() == "1 customer"


def test_status_prints_tables_not_python_data(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(
            engine, [registered("C1", at="2025-12-01T09:00:00+08:00"), deposit("C1", at="2025-12-02T09:00:00+08:00")]
        )
        relay_once(engine, kafka_broker, topic)
    consumed = timeline(
        "consume", "summary", "--store", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
        "--once", "--now", iso(NOW), "--group", f"cli-{topic}",
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr[-3000:]
    assert "applied 2 events (0 repeats, 0 dead letters)" in consumed.stderr
    done = timeline("status", "--store", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
                    env={"COLUMNS": "100"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "{" not in done.stdout and "'" not in done.stdout, done.stdout
    assert re.search(rf"^default +{topic} +2 +0 *$", done.stdout, re.M) and f"group cli-{topic}: lag 0" in done.stdout
    assert "customer_summary: 1 row," in done.stdout


def test_an_unreachable_broker_is_named_with_the_time_it_had(pg_url):
    with pg_engine(pg_url):
        pass
    done = timeline("status", "--store", pg_url, "--bootstrap", "127.0.0.1:1", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["errors"]["kafka"] == "Kafka broker at 127.0.0.1:1 not reachable within 4 s"


def test_consume_once_says_which_broker_did_not_answer(pg_url, kafka_broker, topic):
    with kafka_broker.paused_for():
        run = timeline(
            "consume", "summary", "--once", "--give-up-after", "3", "--store", pg_url,
            "--bootstrap", kafka_broker.bootstrap, "--topic", topic, timeout=40,
        )  # fmt: skip
    assert run.returncode == 1, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "giving up" in last and "KafkaTimeoutError: KafkaTimeoutError" not in run.stderr
    assert kafka_broker.bootstrap in last


def test_the_read_model_commands_take_their_configuration_from_the_environment(pg_url, kafka_broker, topic):
    with pg_engine(pg_url) as engine:
        ingest(engine, [registered("C1", at="2025-12-01T09:00:00+08:00")])
        relay_once(engine, kafka_broker, topic)
    env = {"TIMELINE_DB": pg_url, "TIMELINE_KAFKA": kafka_broker.bootstrap, "TIMELINE_TOPIC": topic}
    consumed = timeline("consume", "summary", "--once", "--now", iso(NOW), "--group", f"env-{topic}", "--json", env=env)
    assert consumed.returncode == 0, consumed.stderr[-3000:]
    assert json.loads(consumed.stdout)["topic"] == topic and json.loads(consumed.stdout)["applied"] == 1
    report = json.loads(timeline("status", "--json", env=env).stdout)
    assert f"env-{topic}" in {g["group"] for g in report["groups"]}
    overridden = timeline("status", "--json", "--bootstrap", "127.0.0.1:1", env=env)
    assert json.loads(overridden.stdout)["errors"]["kafka"].startswith("Kafka broker at 127.0.0.1:1 "), (
        "an option beats its variable"
    )


def test_a_read_model_database_that_is_not_postgresql_is_one_line(tmp_path):
    done = timeline("summary", "list", "--db", f"sqlite:///{tmp_path / 'views.db'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("timeline: error: the read model lives in PostgreSQL"), line
