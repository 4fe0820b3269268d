"""A Tansu broker per test session, and a fresh topic per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.kafka import Broker, start_broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[Broker]:
    """A running Tansu broker on a free port (memory storage); stopped after the session."""
    broker = start_broker(tmp_path_factory.mktemp("tansu"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic() -> str:
    """A topic name of this test's own (the relay creates it, 3 partitions)."""
    return f"customer-events-{uuid.uuid4().hex[:8]}"
