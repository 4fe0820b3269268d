"""Stored bytes: rendered whole or spliced around the stream's fields, they are the same canonical bytes."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import deposit, erased, registered, visit
from timeline.codec import around, encode
from timeline.prepare import prepare

RECORDED_AT = "2026-01-01T00:00:00.123456Z"
PREV = "ab" * 32


def _content(raw):
    return prepare(raw).content


def test_spliced_bytes_are_the_whole_rendering():
    for raw in (deposit(), visit(notes='说明 \\ " \n'), erased(), deposit(product="time", term_months=12)):
        content = _content(raw)
        sides = around(content)
        assert sides is not None
        assert encode(content, RECORDED_AT, PREV, None, sides) == encode(content, RECORDED_AT, PREV, None)


def test_an_event_with_pii_to_seal_has_no_sides():
    assert around(_content(registered())) is None


_text = st.text(min_size=1, max_size=30).filter(lambda t: t.strip())


@given(purpose=_text, source=st.none() | _text.filter(lambda t: len(t) <= 64), notes=st.none() | _text)
def test_any_text_splices_to_the_canonical_bytes(purpose, source, notes):
    raw = visit(purpose=purpose[:500], **({"notes": notes} if notes is not None else {}))
    if source is not None:
        raw["source"] = source
    content = _content(raw)
    spliced, digest = encode(content, RECORDED_AT, PREV, None, around(content))
    assert (spliced, digest) == encode(content, RECORDED_AT, PREV, None)
    assert orjson.dumps(orjson.loads(spliced), option=orjson.OPT_SORT_KEYS) == spliced
