"""A policy that cannot be used, said in one line: the field, by its path in the file, and the reason.

Every policy file goes through :func:`timeline.domain.policy.parse_policy`
(``timeline whatif``, ``policy publish``, ``POST /v1/whatif``), so a candidate
is refused the same way everywhere: ``tier.tiers[2].threshold: 70000 is not
above tier.tiers[1].threshold 80000``. Pydantic's errors are rewritten into
that path style; the consistency checks that span fields raise
:func:`inconsistent` with the full path of the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from timeline.domain.errors import ConfigurationError

INCONSISTENT = "policy_inconsistent"


class InvalidPolicy(ConfigurationError):
    """The policy breaks its schema or is inconsistent: one line naming the field and the reason."""


def inconsistent(field: str, reason: str) -> PydanticCustomError:
    """The error a cross-field check raises: ``field`` is the full path (``tier.tiers[2].threshold``)."""
    return PydanticCustomError(INCONSISTENT, "{field}: {reason}", {"field": field, "reason": reason})


def field_path(loc: Sequence[int | str]) -> str:
    """``("tier", "tiers", 2, "threshold")`` → ``tier.tiers[2].threshold``; the whole policy is ``policy``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "policy"


def shown(value: Any) -> str:
    """A value as the file has it: numbers bare (``70000``, also when written as text), the rest as JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        try:
            Decimal(value)
        except InvalidOperation:
            return json.dumps(value, ensure_ascii=False)
        return value
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def reason(error: ErrorDetails) -> str:
    """Why one pydantic error refuses its field, said about the value given."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "missing: the field is required"
    if kind == "extra_forbidden":
        return f"unknown field (value {shown(value)})"
    if kind == "greater_than_equal":
        floor = ctx.get("ge")
        if floor == 0:
            return f"{shown(value)} is negative"
        return f"{shown(value)} is below the least allowed, {shown(floor)}"
    if kind == "greater_than":
        return f"{shown(value)} is not above {shown(ctx.get('gt'))}"
    if kind == "less_than_equal":
        return f"{shown(value)} is above the most allowed, {shown(ctx.get('le'))}"
    if kind == "string_pattern_mismatch":
        return f"{shown(value)} does not match {ctx.get('pattern')}"
    if kind == "string_too_short":
        return "empty: it needs at least one character"
    if kind == "too_short":
        return f"{shown(value)} is too short: at least {ctx.get('min_length')} needed"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{shown(value)} is not a JSON object"
    message = error["msg"].removeprefix("Value error, ")
    return f"{shown(value)}: {message[:1].lower()}{message[1:]}"


def describe(error: ErrorDetails) -> str:
    """One error as ``path: reason``."""
    ctx = error.get("ctx") or {}
    if error["type"] == INCONSISTENT:
        return f"{ctx['field']}: {ctx['reason']}"
    return f"{field_path(error['loc'])}: {reason(error)}"


def one_line(exc: ValidationError) -> str:
    """The first error of ``exc`` as ``path: reason``, and how many more there are."""
    errors = exc.errors()
    first = describe(errors[0])
    more = len(errors) - 1
    return first if not more else f"{first} (and {more} more {'error' if more == 1 else 'errors'})"
