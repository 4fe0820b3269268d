"""The parameter tables of docs/POLICY.md, rendered from a policy so the document cannot drift from the file.

The document marks each table with ``<!-- policy-table: NAME -->`` … ``<!-- /policy-table -->``;
:func:`regenerate` rewrites what lies between from the policy and leaves the prose alone. Every
parameter of the :class:`~timeline.domain.policy.Policy` model has a row (a new parameter without a
description here is an error), so a bank reading the document sees every number its policy sets.

Pure apart from :func:`main`, the maintainers' command: ``python -m timeline.domain.policy_doc``
rewrites docs/POLICY.md from the shipped policy (``--check`` only compares).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

from timeline.domain.errors import ConfigurationError
from timeline.domain.policy import DEFAULT_POLICY, Policy, load_policy
from timeline.domain.types import Stage

DOCUMENT = "docs/POLICY.md"
REGENERATE = "python -m timeline.domain.policy_doc"

_MARKED = re.compile(r"(<!-- policy-table: (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- /policy-table -->)", re.DOTALL)

Show = Callable[[object, Policy], str]


def _days(value: object, policy: Policy) -> str:
    return f"{value} day" if value == 1 else f"{value} days"


def _months(value: object, policy: Policy) -> str:
    return f"{value} month" if value == 1 else f"{value} months"


def _years(value: object, policy: Policy) -> str:
    return f"{value} year" if value == 1 else f"{value} years"


def _points(value: object, policy: Policy) -> str:
    return f"{value} point" if value == 1 else f"{value} points"


def _money(value: object, policy: Policy) -> str:
    return f"{Decimal(str(value)):,} {policy.currency}"


def _ratio(value: object, policy: Policy) -> str:
    return f"{(Decimal(str(value)) * 100).normalize():f}%"


def _times(value: object, policy: Policy) -> str:
    return f"× {value}"


def _code(value: object, policy: Policy) -> str:
    return f"`{value}`"


def _text(value: object, policy: Policy) -> str:
    return str(value)


PARAMETERS: dict[str, tuple[str, Show]] = {
    "id": ("*policy id*: a changed number is a new policy with a new id", _code),
    "time_zone": ("*time zone* in which dates, months and years are read", _code),
    "currency": ("*currency* of every amount", _code),
    "tier.upgrade_hold_days": ("*upgrade hold*: how long the lowest AUM must meet a higher tier", _days),
    "tier.downgrade_grace_days": ("*grace period*: how long AUM may stay below the tier's threshold", _days),
    "lifecycle.churn_window_days": ("*churn window*: AUM 0 throughout it makes a customer churned (2)", _days),
    "lifecycle.stale_complaint_days": ("*complaint age*: an unresolved complaint this old means at risk (3a)", _days),
    "lifecycle.drop_window_days": ("*drop window*: where the AUM peak a drop is measured from lies (3b)", _days),
    "lifecycle.drop_min_peak": ("*smallest peak*: the least peak from which a drop counts (3b)", _money),
    "lifecycle.drop_ratio": ("*drop ratio*: AUM below this share of the peak is a drop (3b)", _ratio),
    "lifecycle.silence_days": ("*silence*: tenure, and time without activity, that mean at risk (3c)", _days),
    "lifecycle.established_tenure_days": ("*established tenure* (5)", _days),
    "lifecycle.loyal_tenure_days": ("*loyal tenure* (4)", _days),
    "lifecycle.loyal_min_tier": ("*loyal tier*: the lowest tier that makes a long-standing customer loyal (4)", _code),
    **{
        f"lifecycle.stage_labels.{stage}": (f"*label* people read beside the stage `{stage}`", _text) for stage in Stage
    },
    "points.deposit_hold_days": ("*deposit hold*: how long a deposit must stay before it vests", _days),
    "points.deposit_unit": ("*deposit unit*: a deposit earns one point per whole unit kept", _money),
    "points.long_time_deposit_months": ("*long term*: the shortest term of a time deposit that earns more", _months),
    "points.long_time_deposit_multiplier": ("*long-term multiplier* of such a deposit's points", _times),
    "points.referral": ("*referral points*, for a qualified referral", _points),
    "points.birthday": ("*birthday points*, for the first birthday greeting of a calendar year", _points),
    "points.survey": ("*survey points*, for the first survey of a calendar month", _points),
    "points.expiry_years": ("*expiry*: a bucket of year Y expires at the start of year Y + this", _years),
    "referral.min_first_deposit": ("*minimum first deposit*: what a referred customer's first deposits total", _money),
}
"""Every scalar parameter of a policy, by its key in the policy file: what it means, how its value reads."""

TABLES = ("policy", "tier", "lifecycle", "points", "referral")
"""The marked tables of the document: the policy's own fields, then one per section of the policy file."""


def parameter_keys(model: type[BaseModel] = Policy, prefix: str = "") -> list[str]:
    """The dotted keys of every scalar field of a policy model (the tier levels are a table of their own)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(parameter_keys(annotation, f"{prefix}{name}."))
        elif (prefix, name) != ("tier.", "tiers"):
            keys.append(prefix + name)
    return keys


def render(policy: Policy, name: str) -> str:
    """The markdown of table ``name`` (one of :data:`TABLES`) for ``policy``, ending in a newline."""
    if name not in TABLES:
        raise ValueError(f"no policy table {name!r}: the tables are {', '.join(TABLES)}")
    prefix = "" if name == "policy" else f"{name}."
    keys = [k for k in parameter_keys() if (k.startswith(prefix) if prefix else "." not in k)]
    rows = ["| parameter | value | policy key |", "| --- | --- | --- |"]
    for key in keys:
        meaning, show = PARAMETERS[key]
        rows.append(f"| {meaning} | {show(_value(policy, key), policy)} | `{key}` |")
    table = "\n".join(rows) + "\n"
    if name != "tier":
        return table
    levels = ["| tier | AUM threshold | label (`tier.tiers[].label`) |", "| --- | --- | --- |"]
    levels.extend(
        f"| `{level.name}` | {_money(level.threshold, policy)} | {level.label or ''} |" for level in policy.tier.tiers
    )
    return "\n".join(levels) + "\n\n" + table


def regenerate(text: str, policy: Policy) -> str:
    """``text`` with every marked table rendered afresh from ``policy``; each table must be marked once."""
    found = [m.group("name") for m in _MARKED.finditer(text)]
    unknown = sorted(set(found) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown policy table marker(s): {', '.join(unknown)}; the tables are {', '.join(TABLES)}")
    missing = [t for t in TABLES if found.count(t) != 1]
    if missing:
        raise ValueError(f"each policy table must be marked exactly once; not so: {', '.join(missing)}")
    return _MARKED.sub(lambda m: m.group(1) + "\n" + render(policy, m.group("name")) + "\n" + m.group(4), text)


def _value(policy: Policy, key: str) -> object:
    value: object = policy
    for part in key.split("."):
        value = getattr(value, part)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or ``--check``) the marked tables of the policy document; one line on stderr if it fails."""
    parser = argparse.ArgumentParser(prog=REGENERATE, description=main.__doc__)
    parser.add_argument("document", nargs="?", default=DOCUMENT, help=f"the document (default {DOCUMENT})")
    parser.add_argument("--policy", default=DEFAULT_POLICY, help=f"policy id or .json file (default {DEFAULT_POLICY})")
    parser.add_argument("--check", action="store_true", help="only report whether the document is up to date")
    args = parser.parse_args(argv)
    path = Path(args.document)
    try:
        policy = load_policy(args.policy)
        text = path.read_text(encoding="utf-8")
        fresh = regenerate(text, policy)
    except ConfigurationError as exc:
        return _fail(str(exc))
    except FileNotFoundError:
        hint = " (run it from the repository's root, or give the path)" if args.document == DOCUMENT else ""
        return _fail(f"no such file: {path}{hint}")
    except (OSError, ValueError) as exc:
        return _fail(f"{path}: {exc}")
    if fresh == text:
        return 0
    if args.check:
        command = " ".join(
            [REGENERATE]
            + ([args.document] if args.document != DOCUMENT else [])
            + (["--policy", args.policy] if args.policy != DEFAULT_POLICY else [])
        )
        return _fail(f"{path} is out of date with policy {args.policy}: run `{command}`", status=1)
    path.write_text(fresh, encoding="utf-8")
    print(f"{path}: tables regenerated from policy {args.policy}")
    return 0


def _fail(message: str, status: int = 2) -> int:
    print(f"{REGENERATE}: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
