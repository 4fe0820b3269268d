"""Money: CNY decimals with at most two places, never floats.

Accepted forms are a decimal string ("50000.00", "100") or a JSON integer or
plain JSON decimal (parsed to ``Decimal`` by :func:`timeline.application.jsonl.loads`).
Exponent notation ("1e3") and more than two places are refused, because a
bank ledger must never guess what a float-like value meant.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_MONEY_TEXT = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,2})?$")
CENT = Decimal("0.01")


class FloatLiteral:
    """A JSON number written with an exponent, kept as its literal so it can be refused.

    Not a ``str``: no text field can take it for text ("1e3" as a purpose);
    money fields refuse it with a reason of their own.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def parse_money(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("money must be a decimal string, not a boolean")
    if isinstance(value, FloatLiteral):
        raise ValueError(f"money must not use exponent notation: {value}")
    if isinstance(value, float):
        raise ValueError("money must be a decimal string or integer, never a float")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be a finite decimal")
        value = format(value, "f")
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "50000.00"')
    if not _MONEY_TEXT.match(value):
        if re.match(r"^[0-9]+\.[0-9]{3,}$", value):
            raise ValueError(f"money has more than 2 decimal places: {value}")
        raise ValueError(f"not a plain decimal amount: {value!r}")
    try:
        return Decimal(value).quantize(CENT)
    except InvalidOperation as exc:  # pragma: no cover - regex guards this
        raise ValueError(f"not a decimal amount: {value!r}") from exc


def money_text(value: Decimal) -> str:
    """Canonical text of an amount: always two places."""
    return format(value.quantize(CENT), "f")


Money = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$",
            "description": "CNY amount, a decimal with at most 2 places",
        }
    ),
]
