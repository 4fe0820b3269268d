"""The event store port's contract, reading single rows: every backend must pass every test here."""

from __future__ import annotations

from tests.contract.test_event_store_contract import new
from tests.support.backends import every_backend
from timeline.application.ports import AppendBatch

pytestmark = every_backend


def test_rows_are_read_by_customer_and_version_and_absent_keys_left_out(store):
    store.append(AppendBatch(events=[new("C1", 1, b'{"a":1}'), new("C1", 2, b'{"a":2}'), new("C2", 1, b'{"b":1}')]))
    rows = store.read_rows([("C1", 2), ("C2", 1), ("C2", 9), ("C9", 1)])
    assert sorted(rows) == [("C1", 2), ("C2", 1)]
    assert rows[("C1", 2)].state == b'{"a":2}' and rows[("C2", 1)].state == b'{"b":1}'
    assert rows[("C1", 2)].position == store.read_stream("C1")[1].position


def test_many_rows_are_read_in_one_call(store):
    store.append(AppendBatch(events=[new("C1", v) for v in range(1, 901)]))
    assert len(store.read_rows([("C1", v) for v in range(1, 901)])) == 900
