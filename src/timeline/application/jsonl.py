"""JSON Lines input: bounded reading, and decoding that keeps money exact and refuses ambiguous input.

The careful decoder (the standard library's, with hooks) turns fractions into
``Decimal``, keeps exponent literals aside and refuses duplicate keys. It
calls back into Python for every object, so each line is first given to
orjson, whose value is taken only when it is provably the careful decoder's:
no number with a fraction or exponent in it, and the line is exactly orjson's
own compact rendering of that value — so no key was dropped as a duplicate
and nothing was spelt in a way the two decoders might read differently.
Anything else (other spacing, escapes, floats, invalid input) takes the
careful path, so values and error messages are the careful decoder's.

Hostile lines are refused by limits both paths share: a line is at most
:data:`MAX_LINE_BYTES` (longer ones are skipped while reading, never held),
values nest at most :data:`MAX_DEPTH` deep, numbers are at most
:data:`MAX_NUMBER_CHARS` long.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import orjson

from timeline.domain.errors import RejectedEvent, TimelineError
from timeline.domain.money import FloatLiteral

MAX_LINE_BYTES = 1 << 20
MAX_DEPTH = 32
"""Objects and arrays inside one another; an event needs 2."""
MAX_NUMBER_CHARS = 100
_CHUNK = 1 << 20
_BOM = "\ufeff"
_ARRAY_HINT = "the input looks like a JSON array, not JSON Lines: convert it with  jq -c '.[]' FILE"


class NotJsonLines(TimelineError):
    """The input as a whole is not JSON Lines (e.g. one JSON array): refused before anything is stored."""


def _too_long_number(text: str) -> RejectedEvent:
    return RejectedEvent(f"a number is longer than {MAX_NUMBER_CHARS} characters")


def _parse_float(text: str) -> Decimal | FloatLiteral:
    if len(text) > MAX_NUMBER_CHARS:
        raise _too_long_number(text)
    if "e" in text or "E" in text:
        return FloatLiteral(text)
    return Decimal(text)


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _too_long_number(text)
    return int(text)


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
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
    object_pairs_hook=_no_duplicate_keys,
)
_TOO_DEEP = f"JSON nested more than {MAX_DEPTH} levels deep"


_CAREFUL = object()
"""What :func:`_quick` returns when the careful decoder must decide."""


def _quick(raw: bytes | str) -> Any:
    """orjson's value of one line if it is the careful decoder's, else :data:`_CAREFUL`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _CAREFUL
    if not _plain(value, MAX_DEPTH):
        return _CAREFUL
    text = raw.strip().encode() if isinstance(raw, str) else raw.strip()
    if orjson.dumps(value) != text:
        return _CAREFUL
    return value


def _plain(value: Any, room: int) -> bool:
    """Whether ``value`` holds no float and nests at most ``room`` containers deep."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return kind is not float
    if room == 0:
        return False
    for item in items:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and not _plain(item, room - 1)):
            return False
    return True


def _deeper_than(value: Any, room: int) -> bool:
    """Whether ``value`` nests more than ``room`` containers deep (looks no deeper than that)."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    return room == 0 or any(_deeper_than(item, room - 1) for item in items)


def loads(text: str) -> Any:
    """Parse one JSON document; numbers with a fraction become ``Decimal``."""
    value = _quick(text)
    return _careful(text) if value is _CAREFUL else value


def _careful(text: str) -> Any:
    try:
        value = _DECODER.decode(text)
    except RejectedEvent:
        raise
    except RecursionError:
        raise RejectedEvent(_TOO_DEEP) from None
    except ValueError as exc:
        raise RejectedEvent(f"malformed JSON: {exc}") from None
    if _deeper_than(value, MAX_DEPTH):
        raise RejectedEvent(_TOO_DEEP)
    return value


def check_utf8(path: str) -> None:
    """Refuse a whole file that is not UTF-8 before anything is ingested."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise RejectedEvent(f"{path} is not UTF-8 (invalid byte at offset {offset + exc.start})") from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise RejectedEvent(f"{path} is not UTF-8 (truncated sequence at its end)") from None


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than :data:`MAX_LINE_BYTES`, skipped while reading: its length and first bytes."""

    size: int
    head: bytes | str


Line = bytes | str | Overlong


def bounded_lines(stream: IO[bytes] | IO[str]) -> Iterator[Line]:
    """The lines of a stream, read with a bounded ``readline``: an over-long line is skipped in chunks."""
    readline = stream.readline
    limit = MAX_LINE_BYTES + 1
    while line := readline(limit):
        if len(line) < limit:
            yield line
            continue
        size = len(line)
        end = line[-1:]
        while end not in ("\n", b"\n") and (chunk := readline(_CHUNK)):
            size += len(chunk)
            end = chunk[-1:]
        yield Overlong(size, line[:64])


BLANK = object()
"""What :func:`read_line` gives for a blank line: no event."""


def read_line(raw: Line) -> Any:
    """One input line: its decoded JSON, the RejectedEvent explaining why not, or :data:`BLANK`."""
    if type(raw) is Overlong or len(raw) > MAX_LINE_BYTES:
        size = raw.size if type(raw) is Overlong else len(raw)
        return RejectedEvent(f"line is longer than {MAX_LINE_BYTES} bytes ({size} bytes)")
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


def _without_bom(raw: Line) -> Line:
    if type(raw) is Overlong:
        head = _without_bom(raw.head)
        return Overlong(raw.size - (len(raw.head) - len(head)), head)  # type: ignore[arg-type]
    if isinstance(raw, bytes):
        return raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    return raw[1:] if raw.startswith(_BOM) else raw


def _opening(raw: Line) -> bytes | str:
    """The first non-blank character of a line ("" if it is blank)."""
    text = raw.head if type(raw) is Overlong else raw
    return text.lstrip()[:1]  # type: ignore[union-attr]


class JsonLines:
    """The lines of a JSON Lines stream, read once.

    Iterating gives ``(line number, decoded JSON or the RejectedEvent
    explaining why not)``, skipping blanks. :meth:`numbered` gives the raw
    lines instead, for a reader that decodes them elsewhere (ingestion hands
    large inputs to a worker process: :mod:`timeline.application.prepare`). A stream
    with ``readline`` (a file) is read a bounded line at a time. A
    byte-order mark opening the input is dropped; an input whose first
    non-blank character opens a JSON array is refused as a whole
    (:class:`NotJsonLines`) when that line is read.
    """

    def __init__(self, stream: Iterable[bytes | str] | IO[bytes] | IO[str]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        for number, raw in self.numbered():
            value = read_line(raw)
            if value is not BLANK:
                yield number, value

    def numbered(self) -> Iterator[tuple[int, Line]]:
        stream = self._stream
        lines = enumerate(bounded_lines(stream) if hasattr(stream, "readline") else stream, start=1)  # type: ignore[arg-type]
        for number, raw in lines:
            if number == 1:
                raw = _without_bom(raw)
            opening = _opening(raw)
            if opening in ("[", b"["):
                raise NotJsonLines(_ARRAY_HINT)
            yield number, raw
            if opening:
                break
        yield from lines


def read_lines(stream: Iterable[bytes | str] | IO[bytes] | IO[str]) -> JsonLines:
    """``(line number, decoded JSON or the RejectedEvent explaining why not)``, skipping blanks."""
    return JsonLines(stream)
