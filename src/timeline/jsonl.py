"""JSON decoding that keeps money exact and refuses ambiguous input.

The careful decoder (the standard library's, with hooks) turns fractions into
``Decimal``, keeps exponent literals aside and refuses duplicate keys. It
calls back into Python for every object, so each line is first given to
orjson, whose value is taken only when it is provably the careful decoder's:
no number with a fraction or exponent in it, and the line is exactly orjson's
own compact rendering of that value — so no key was dropped as a duplicate
and nothing was spelt in a way the two decoders might read differently.
Anything else (other spacing, escapes, floats, invalid input) takes the
careful path, so values and error messages are the careful decoder's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import orjson

from timeline.errors import RejectedEvent
from timeline.money import FloatLiteral


def _parse_float(text: str) -> Decimal | FloatLiteral:
    if "e" in text or "E" in text:
        return FloatLiteral(text)
    return Decimal(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RejectedEvent(f"duplicate key {key!r} in JSON object")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(
    parse_float=_parse_float, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
)


_CAREFUL = object()
"""What :func:`_quick` returns when the careful decoder must decide."""


def _quick(raw: bytes | str) -> Any:
    """orjson's value of one line if it is the careful decoder's, else :data:`_CAREFUL`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _CAREFUL
    text = raw.strip().encode() if isinstance(raw, str) else raw.strip()
    if orjson.dumps(value) != text or not _free_of_floats(value):
        return _CAREFUL
    return value


def _free_of_floats(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return kind is not float
    for item in items:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and not _free_of_floats(item)):
            return False
    return True


def loads(text: str) -> Any:
    """Parse one JSON document; numbers with a fraction become ``Decimal``."""
    value = _quick(text)
    return _careful(text) if value is _CAREFUL else value


def _careful(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RejectedEvent:
        raise
    except (ValueError, RecursionError) as exc:
        raise RejectedEvent(f"malformed JSON: {exc}") from None


MAX_LINE_BYTES = 1 << 20


def check_utf8(path: str) -> None:
    """Refuse a whole file that is not UTF-8 before anything is ingested."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise RejectedEvent(f"{path} is not UTF-8 (invalid byte at offset {offset + exc.start})") from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise RejectedEvent(f"{path} is not UTF-8 (truncated sequence at its end)") from None


BLANK = object()
"""What :func:`read_line` gives for a blank line: no event."""


def read_line(raw: bytes | str) -> Any:
    """One input line: its decoded JSON, the RejectedEvent explaining why not, or :data:`BLANK`."""
    if len(raw) > MAX_LINE_BYTES:
        return RejectedEvent(f"line is longer than {MAX_LINE_BYTES} bytes")
    value = _quick(raw)
    if value is not _CAREFUL:
        return value
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return RejectedEvent("line is not UTF-8")
    if not text.strip():
        return BLANK
    try:
        return _careful(text)
    except RejectedEvent as exc:
        return exc


class JsonLines:
    """The lines of a JSON Lines stream, read once.

    Iterating gives ``(line number, decoded JSON or the RejectedEvent
    explaining why not)``, skipping blanks. :meth:`numbered` gives the raw
    lines instead, for a reader that decodes them elsewhere (ingestion hands
    large inputs to a worker process: :mod:`timeline.prepare`).
    """

    def __init__(self, stream: Iterable[bytes | str]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        for number, raw in self.numbered():
            value = read_line(raw)
            if value is not BLANK:
                yield number, value

    def numbered(self) -> Iterator[tuple[int, bytes | str]]:
        return enumerate(self._stream, start=1)


def read_lines(stream: Iterable[bytes | str]) -> JsonLines:
    """``(line number, decoded JSON or the RejectedEvent explaining why not)``, skipping blanks."""
    return JsonLines(stream)
