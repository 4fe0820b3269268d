"""The Kafka relay on a real broker (Tansu) and real databases.

Every test publishes to a topic of its own on the session's broker and reads
it back without a consumer group (assign + seek to beginning).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.factories import deposit, erased, event, registered, visit, withdrawal
from tests.kafka import Broker, read_topic
from timeline.application.keyring import KeyRing
from timeline.consumers.cloudevents import CONTENT_TYPE, parse
from timeline.consumers.relay.positions import PositionStore, RelayError
from timeline.consumers.relay.relay import Relay
from timeline.domain.recorded import RecordedEvent
from timeline.engine import Engine

TIMELINE = str(Path(sys.executable).with_name("timeline"))
ROOT = Path(__file__).resolve().parents[2]

PEOPLE = {
    "C1": {"name": "欧阳娜娜", "birth_date": "1961-07-19", "phone": "+86 139 1234 5678"},
    "C2": {"name": "Zhang Weiqiang", "birth_date": "1974-03-08", "phone": "021-6543-2109"},
    "C3": {"name": "李秀英", "birth_date": "1958-11-30", "phone": "+86 135 7777 0420"},
    "C4": {"name": "Chen Jing", "birth_date": "1990-02-14", "phone": "+86 188 2468 1357"},
}


def ingest(engine: Engine, clock, events: list[dict[str, Any]]) -> None:
    outcomes = list(engine.ingestor(clock=clock, batch_size=2000).ingest(list(enumerate(events, 1))))
    rejected = [o for o in outcomes if o.status == "rejected"]
    assert not rejected, rejected[:3]


def small_branch() -> list[dict[str, Any]]:
    """Four customers, interleaved; C3 is erased (its PII must read as erased)."""
    events = [registered(c, at="2025-01-01T09:00:00+08:00", **PEOPLE[c]) for c in PEOPLE]
    for day in range(1, 8):
        for c in ("C1", "C2", "C4"):
            events.append(deposit(c, at=f"2025-02-{day:02d}T10:00:00+08:00", amount=f"{day}00.00"))
        events.append(visit("C3", at=f"2025-02-{day:02d}T11:00:00+08:00", notes=f"visit {day}"))
    events.append(withdrawal("C1", at="2025-03-01T10:00:00+08:00", amount="50.00"))
    events.append(
        event(
            "customer.profile_updated",
            "C2",
            "2025-03-02T10:00:00+08:00",
            {"phone": "+86 186 5555 0147"},
            source="crm",
            actor="RM007",
        )
    )
    events.append(erased("C3", at="2025-04-01T09:00:00+08:00"))
    return events


def many(customers: int, per_customer: int, prefix: str = "K") -> list[dict[str, Any]]:
    """Registrations, then rounds of deposits and visits across every customer (interleaved)."""
    ids = [f"{prefix}{i:05d}" for i in range(customers)]
    events = [registered(c, at="2024-01-01T09:00:00+08:00", name=f"Person {c}") for c in ids]
    for n in range(per_customer):
        day = f"2024-{1 + n // 28 % 12:02d}-{1 + n % 28:02d}"
        for i, c in enumerate(ids):
            events.append(
                deposit(c, at=f"{day}T10:00:00+08:00", amount="100.00")
                if (n + i) % 2
                else visit(c, at=f"{day}T10:00:00+08:00")
            )
    return events


def stored(engine: Engine) -> list[RecordedEvent]:
    return KeyRing(engine.store, None).decode(engine.store.read_log(0, 10_000_000))


def make_relay(engine: Engine, broker: Broker, topic: str, **kw: Any) -> Relay:
    kw.setdefault("batch_size", 100)
    return Relay(engine.store, broker.bootstrap, topic, **kw)


def check_order_per_customer(records: list[Any]) -> None:
    """One partition per customer, and each customer's first deliveries in stream order."""
    partition_of: dict[bytes, int] = {}
    seen: set[str] = set()
    last_version: dict[str, int] = collections.defaultdict(int)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert partition_of.setdefault(r.key, r.partition) == r.partition, f"{r.key} on two partitions"
        e = parse(r.value)
        if str(e.event_id) in seen:
            continue
        seen.add(str(e.event_id))
        assert e.version == last_version[e.customer_id] + 1, f"{e.customer_id}: v{e.version} after v{last_version}"
        last_version[e.customer_id] = e.version


def positions_of(records: list[Any]) -> list[int]:
    return [parse(r.value).position for r in records]


@pytest.mark.timeout(60)
def test_every_event_arrives_once_in_order_with_its_envelope_and_no_pii(engine, clock, kafka_broker, topic):
    ingest(engine, clock, small_branch())
    relay = make_relay(engine, kafka_broker, topic, batch_size=7)
    try:
        stats = relay.run(stop_when_caught_up=True)
    finally:
        relay.close()
    events = stored(engine)
    assert stats.published == len(events) and stats.failures == 0
    assert stats.position == engine.store.head_position()
    assert stats.idempotent is True  # Tansu answers InitProducerId

    records = read_topic(kafka_broker.bootstrap, topic)
    assert sorted(positions_of(records)) == [e.position for e in events]  # all, once
    assert len({r.partition for r in records}) > 1  # four customers over three partitions
    check_order_per_customer(records)

    by_position = {e.position: e for e in events}
    for r in records:
        assert dict(r.headers)["content-type"] == CONTENT_TYPE.encode()
        ce = json.loads(r.value)
        e = by_position[ce["position"]]
        assert r.key == e.customer_id.encode()
        assert parse(r.value) == e
        assert ce["id"] == str(e.event_id) and ce["subject"] == e.customer_id and ce["type"] == e.type
        assert ce["dataschema"].endswith(f"{e.type}.v1.json")
    body = b"\n".join(r.value + (r.key or b"") for r in records)
    for person in PEOPLE.values():
        for value in person.values():
            assert value.encode() not in body and json.dumps(value).encode() not in body
    assert b"+86 186 5555 0147" not in body

    registrations = {
        parse(r.value).customer_id: json.loads(r.value)["data"]
        for r in records
        if parse(r.value).type == "customer.registered"
    }
    assert registrations["C1"]["name"] == {"$encrypted": True}
    assert registrations["C3"]["name"] == {"$erased": True}
    assert registrations["C1"]["branch_id"] == "BR001"


@pytest.mark.timeout(30)
def test_position_table_is_created_idempotently_and_kept_per_name_and_topic(db_url):
    a, b = PositionStore(db_url), PositionStore(db_url)
    try:
        assert a.load("default", "t1") == 0
        a.save("default", "t1", 10)
        a.save("default", "t1", 25)
        b.save("audit", "t1", 3)
        assert (b.load("default", "t1"), a.load("audit", "t1"), a.load("default", "t2")) == (25, 3, 0)
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_a_second_relay_with_the_same_name_and_topic_refuses_to_start_on_postgres(pg_url):
    a, b = PositionStore(pg_url), PositionStore(pg_url, lock_wait=0.5)
    try:
        a.acquire("default", "t1")
        with pytest.raises(RelayError, match="another relay"):
            b.acquire("default", "t1")
        b.acquire("audit", "t1")  # another name is another relay
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_the_caching_partitioner_maps_keys_as_the_default_one():
    from kafka.partitioner.default import DefaultPartitioner

    from timeline.consumers.relay.producer import KeyCachingPartitioner

    class Cluster:
        def __init__(self, n: int) -> None:
            self.n = n

        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(self.n))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(self.n))

    cached, default = KeyCachingPartitioner(limit=50), DefaultPartitioner()
    for n in (3, 7):
        for _ in range(2):  # second round from the cache (cleared past the limit)
            for i in range(120):
                key = f"C{i:05d}".encode()
                args = ("t", key, key, None, None, Cluster(n))
                assert cached.partition(*args) == default.partition(*args)
