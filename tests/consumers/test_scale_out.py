"""Read models that scale out: several `timeline consume` processes in one group share a topic of 6 partitions.

Three members start; one is SIGKILLed once it has applied part of the second
round of events, and a fourth joins before the third. After each round the read model
equals `state --all`, and the live members' partitions (from their
``/metrics``) cover the topic between them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.consumers.pipeline import (
    NOW,
    ROOT,
    TIMELINE,
    expected,
    group_of,
    ingest,
    kill,
    pg_engine,
    read_model,
    relay_once,
)
from tests.consumers.test_metrics import scraped
from tests.consumers.test_summary import branch_events
from tests.kafka import Broker, free_port
from tests.support.waiting import wait_for
from timeline.domain.recorded import iso

pytestmark = pytest.mark.timeout(150)

PARTITIONS = 6


def alerts_watch(pg_url: str) -> dict[str, dict[str, Any]]:
    """What the alerts consumer last saw of each customer."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT customer_id, tier, lifecycle FROM alerts_watch").fetchall()
    return {c: {"tier": t, "lifecycle": s} for c, t, s in rows}


def watched(want: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c: {"tier": r["tier"], "lifecycle": r["lifecycle"]} for c, r in want.items()}


VIEWS: dict[str, tuple[Callable[[str], Any], Callable[[Any], Any]]] = {
    "summary": (read_model, lambda want: want),
    "alerts": (alerts_watch, watched),
}


class Member:
    """One `timeline consume MODEL` process of the group, with its metrics endpoint."""

    def __init__(self, model: str, pg_url: str, broker: Broker, topic: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [TIMELINE, "consume", model, "--store", pg_url, "--bootstrap", broker.bootstrap, "--topic", topic,
             "--group", group_of(topic, model), "--now", iso(NOW), "--tick-interval", "0", "--max-batch", "100",
             "--metrics-port", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def applied(self) -> float:
        """The messages it has applied so far."""
        return sum(
            v
            for (name, labels), v in scraped(self.port).items()
            if name == "timeline_consumer_messages_total" and ("outcome", "applied") in labels
        )

    def partitions(self) -> set[str]:
        """The partitions assigned to it now (its lag series)."""
        return {dict(labels)["partition"] for name, labels in scraped(self.port) if name == "timeline_consumer_lag"}


def converged(model: str, pg_url: str, engine: Any, members: list[Member]) -> bool:
    """The view equals `state --all`, and the members' partitions are the topic's, each member holding some."""
    read, shown = VIEWS[model]
    try:
        if read(pg_url) != shown(expected(engine)):
            return False
    except psycopg.errors.UndefinedTable:  # no member has created its tables yet
        return False
    held = [m.partitions() for m in members]
    return all(held) and set().union(*held) == {str(p) for p in range(PARTITIONS)} and sum(map(len, held)) == 6


@pytest.mark.parametrize("model", ["summary", "alerts"])
def test_members_killed_and_added_keep_the_read_model_equal_to_state_all(model, pg_url, kafka_broker, topic):
    events = branch_events(customers=30)
    third = len(events) // 3
    rounds = [events[:third], events[third : 2 * third], events[2 * third :]]
    members: list[Member] = []

    def settled(alive: list[Member], what: str) -> None:
        wait_for(lambda: converged(model, pg_url, engine, alive), 40, what, interval=0.2)

    try:
        with pg_engine(pg_url) as engine:
            ingest(engine, rounds[0])
            relay_once(engine, kafka_broker, topic, partitions=PARTITIONS)
            members = [Member(model, pg_url, kafka_broker, topic) for _ in range(3)]
            settled(members, "3 members: the view of round 1")

            before = members[0].applied()
            ingest(engine, rounds[1])
            relay_once(engine, kafka_broker, topic)
            wait_for(lambda: members[0].applied() > before, 20, "the first member to apply some of round 2")
            kill(members[0].process)  # while it applies round 2: its partitions go to the others
            alive = members[1:]
            settled(alive, "1 member killed: the view of round 2")

            members.append(Member(model, pg_url, kafka_broker, topic))
            alive = members[1:]
            ingest(engine, rounds[2])
            relay_once(engine, kafka_broker, topic)
            settled(alive, "1 member added: the view of round 3")
    finally:
        for m in members:
            kill(m.process)
