"""The policy every projection reads: POLICY §4's numbers as versioned data.

A bank changes a number by shipping a new policy file with a new id, never by
editing code. The default, ``bank-default-v1``, ships with the package. A
policy is checked whole when read: its schema (``schemas/policy.schema.json``,
generated from these models) and the consistency of its numbers; a policy
that fails is refused with one line naming the field and the reason
(:mod:`timeline.domain.policy_errors`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from timeline.domain.policy_errors import InvalidPolicy, inconsistent, one_line, shown

DEFAULT_POLICY = "bank-default-v1"
POLICY_ID_PATTERN = r"^[a-z0-9-]{1,64}$"
"""A policy id: what explanations and ``state --json`` print, and what a store's versions are known by."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierLevel(_Frozen):
    name: str = Field(min_length=1)
    """A tier id: policy data, not a closed vocabulary of the code (explanations print it)."""
    threshold: Decimal = Field(ge=0)
    label: str | None = Field(default=None, min_length=1, max_length=60)
    """What people read beside the id (``高净值 high net worth``); absent, the id itself."""


class TierPolicy(_Frozen):
    tiers: tuple[TierLevel, ...] = Field(min_length=1)
    """From the lowest, at threshold 0 (every customer meets it), thresholds strictly ascending."""
    upgrade_hold_days: int = Field(ge=0)
    downgrade_grace_days: int = Field(ge=0)

    @property
    def hold(self) -> dt.timedelta:
        return dt.timedelta(days=self.upgrade_hold_days)

    @property
    def grace(self) -> dt.timedelta:
        return dt.timedelta(days=self.downgrade_grace_days)

    def rank(self, name: str) -> int:
        for index, level in enumerate(self.tiers):
            if level.name == name:
                return index
        raise ValueError(f"unknown tier {name!r}")

    def label(self, name: str) -> str:
        """The label of tier ``name``; its id when it has none or is not a tier of this policy."""
        for level in self.tiers:
            if level.name == name:
                return level.label or name
        return name

    def met_by(self, aum: Decimal) -> int:
        """The rank of the highest tier whose threshold ``aum`` meets."""
        rank = 0
        for index, level in enumerate(self.tiers):
            if aum >= level.threshold:
                rank = index
        return rank


class StageLabels(_Frozen):
    """What people read beside each lifecycle stage's id; absent, the stage in plain English."""

    prospect: str = Field(default="prospect", min_length=1, max_length=60)
    churned: str = Field(default="churned", min_length=1, max_length=60)
    at_risk: str = Field(default="at risk", min_length=1, max_length=60)
    loyal: str = Field(default="loyal", min_length=1, max_length=60)
    established: str = Field(default="established", min_length=1, max_length=60)
    new: str = Field(default="new", min_length=1, max_length=60)

    def of(self, stage: str) -> str:
        """The label of ``stage`` (a :class:`~timeline.domain.types.Stage` value); an unknown one reads as itself."""
        return str(getattr(self, stage)) if stage in StageLabels.model_fields else stage


class LifecyclePolicy(_Frozen):
    churn_window_days: int = Field(ge=0)
    stale_complaint_days: int = Field(ge=0)
    drop_window_days: int = Field(ge=0)
    drop_min_peak: Decimal = Field(ge=0)
    drop_ratio: Decimal = Field(gt=0, le=1)
    silence_days: int = Field(ge=0)
    established_tenure_days: int = Field(ge=0)
    loyal_tenure_days: int = Field(ge=0)
    """Not below ``established_tenure_days``: a customer is established before loyal."""
    loyal_min_tier: str
    """One of ``tier.tiers``' names."""
    stage_labels: StageLabels = Field(default_factory=StageLabels)


class PointsPolicy(_Frozen):
    deposit_hold_days: int = Field(ge=0)
    deposit_unit: Decimal = Field(gt=0)
    long_time_deposit_months: int = Field(ge=0)
    long_time_deposit_multiplier: int = Field(ge=1)
    referral: int = Field(ge=0)
    birthday: int = Field(ge=0)
    survey: int = Field(ge=0)
    expiry_years: int = Field(ge=1)


class ReferralPolicy(_Frozen):
    min_first_deposit: Decimal = Field(ge=0)


class Policy(_Frozen):
    id: str = Field(pattern=POLICY_ID_PATTERN)
    time_zone: str
    """An IANA time zone: days end there, and what people read is shown there with its offset."""
    currency: str
    tier: TierPolicy
    lifecycle: LifecyclePolicy
    points: PointsPolicy
    referral: ReferralPolicy

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "unknown_time_zone", "not a known time zone (an IANA name, e.g. Asia/Shanghai)"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        """The checks that span fields, each naming the field at fault by its full path."""
        tiers = self.tier.tiers
        if tiers[0].threshold != 0:
            raise inconsistent(
                "tier.tiers[0].threshold", f"{tiers[0].threshold} is not 0 (the lowest tier holds every customer)"
            )
        for i in range(1, len(tiers)):
            if tiers[i].threshold <= tiers[i - 1].threshold:
                raise inconsistent(
                    f"tier.tiers[{i}].threshold",
                    f"{tiers[i].threshold} is not above tier.tiers[{i - 1}].threshold {tiers[i - 1].threshold}",
                )
        names = [t.name for t in tiers]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise inconsistent(
                    f"tier.tiers[{i}].name",
                    f"{shown(name)} is also tier.tiers[{names.index(name)}].name (tier names must be distinct)",
                )
        life = self.lifecycle
        if life.loyal_min_tier not in names:
            raise inconsistent(
                "lifecycle.loyal_min_tier", f"{shown(life.loyal_min_tier)} is not a tier (one of {', '.join(names)})"
            )
        if life.loyal_tenure_days < life.established_tenure_days:
            raise inconsistent(
                "lifecycle.loyal_tenure_days",
                f"{life.loyal_tenure_days} is below lifecycle.established_tenure_days {life.established_tenure_days}",
            )
        return self

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@functools.cache
def days(n: int) -> dt.timedelta:
    """Durations are exact (POLICY §3): n × 24 hours. Cached: projections ask for the same few many times."""
    return dt.timedelta(days=n)


def succession_conflict(earlier: Policy, later: Policy) -> str | None:
    """Why ``later`` cannot be in force after ``earlier`` on one timeline (``path: reason``), or None.

    Versions in force one after another keep the calendar, the money and the tier names: a hold or grace
    running across the change compares tiers by name, and stored read models and alerts name them.
    """
    for field in ("time_zone", "currency"):
        mine, theirs = getattr(later, field), getattr(earlier, field)
        if mine != theirs:
            return f"{field}: {shown(mine)} differs from {shown(theirs)} of {earlier.id} (versions keep it)"
    names, before = [t.name for t in later.tier.tiers], [t.name for t in earlier.tier.tiers]
    if len(names) != len(before):
        return f"tier.tiers: {len(names)} tiers differ from the {len(before)} of {earlier.id} (versions keep them)"
    for i, (mine, theirs) in enumerate(zip(names, before, strict=True)):
        if mine != theirs:
            return (
                f"tier.tiers[{i}].name: {shown(mine)} differs from {shown(theirs)} of {earlier.id} (versions keep it)"
            )
    return None


def parse_policy(data: Any) -> Policy:
    """A policy from its JSON value, checked whole; else :class:`InvalidPolicy`, one line: ``path: reason``."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise InvalidPolicy(one_line(exc)) from None


def policy_from_text(text: str, source: str) -> Policy:
    """:func:`parse_policy` of a file's text; ``source`` names the file in the one-line error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPolicy(f"policy {source!r} is not JSON: {exc}") from None
    try:
        return parse_policy(data)
    except InvalidPolicy as exc:
        raise InvalidPolicy(f"policy {source!r} is invalid: {exc}") from None


@functools.cache
def load_policy(name_or_path: str = DEFAULT_POLICY) -> Policy:
    """A shipped policy by id, or a policy file by path (a ``.json`` name)."""
    path = Path(name_or_path)
    try:
        if path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
        else:
            text = resources.files("timeline").joinpath("policies", f"{name_or_path}.json").read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise InvalidPolicy(
            f"no policy {name_or_path!r}: give a shipped id ({DEFAULT_POLICY}) or a .json file"
        ) from None
    except (UnicodeDecodeError, PermissionError) as exc:
        raise InvalidPolicy(f"policy {name_or_path!r} cannot be read: {exc}") from None
    return policy_from_text(text, name_or_path)
