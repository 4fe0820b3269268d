"""JSON decoding that keeps money exact and refuses ambiguous input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

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


def loads(text: str) -> Any:
    """Parse one JSON document; numbers with a fraction become ``Decimal``."""
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


def read_lines(stream: Any) -> Any:
    """``(line number, decoded JSON or the RejectedEvent explaining why not)``, skipping blanks."""
    for number, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield number, RejectedEvent(f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            yield number, RejectedEvent("line is not UTF-8")
            continue
        if not text.strip():
            continue
        try:
            yield number, loads(text)
        except RejectedEvent as exc:
            yield number, exc
