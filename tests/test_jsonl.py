"""Reading JSON Lines: the quick orjson path gives exactly what the careful decoder gives, or steps aside."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.application.jsonl import _careful, loads, read_lines
from timeline.domain.errors import RejectedEvent

LINES = [
    '{"a":1}',
    '{"a":1.5}',
    '{"a":"1.50","b":-0}',
    '{"a":1e3}',
    '{"a":1E2}',
    '{"a":1,"a":2}',
    '{"a":{"b":1,"b":1}}',
    '{"a": 1}',
    '  {"a":1}  ',
    '{"a":1}\n',
    '{"a":"\\u00e9"}',
    '{"a":"é"}',
    '{"a":"\\n\\t\\"\\\\"}',
    '{"a":"\\/"}',
    '{"a":"\\u0000"}',
    '{"a":"\\ud800"}',
    '"\\uD83D\\uDE00"',
    "[1,2]",
    "1.5",
    "NaN",
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":123456789012345678901234567890}',
    '{"a":18446744073709551615}',
    '{"a":-9223372036854775809}',
    '{"a":[1,{"b":2.0}]}',
    '{"a":[1,{"b":2}]}',
    '{"a":true,"b":null,"c":false}',
    '{"a":1,}',
    '{"a":1',
    '\ufeff{"a":1}',
    '{"a":1}\x0c',
]


def _verdict(decode, text):
    try:
        value = decode(text)
    except RejectedEvent as exc:
        return "rejected", str(exc)
    return "value", repr(value), type(value)


@pytest.mark.parametrize("text", LINES)
def test_every_reading_of_a_line_is_the_careful_decoders(text):
    expected = _verdict(_careful, text)
    assert _verdict(loads, text) == expected
    for raw in (text, text.encode("utf-8", "surrogatepass")):
        [_, (number, value)] = list(read_lines(['{"first":1}', raw]))  # not first: no BOM or array check
        assert number == 2
        got = ("rejected", str(value)) if isinstance(value, RejectedEvent) else ("value", repr(value), type(value))
        assert got == expected


def test_fractions_stay_decimal_and_duplicate_keys_are_refused():
    assert loads('{"amount":100.10}') == {"amount": Decimal("100.10")}
    with pytest.raises(RejectedEvent, match="duplicate key 'type'"):
        loads('{"type":"a","type":"b"}')


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@given(_values)
def test_compact_lines_read_as_the_careful_decoder_reads_them(value):
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits: orjson writes none, the standard library does
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert _verdict(loads, text) == _verdict(_careful, text)
    [_, (_, got)] = list(read_lines([b'{"first":1}', text.encode()]))
    assert ("value", repr(got), type(got)) == _verdict(_careful, text)
