"""The policy every projection reads: POLICY §4's numbers as versioned data.

A bank changes a number by shipping a new policy file with a new id, never by
editing code. The default, ``bank-default-v1``, ships with the package.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from decimal import Decimal
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from timeline.domain.errors import ConfigurationError

DEFAULT_POLICY = "bank-default-v1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierLevel(_Frozen):
    name: str = Field(min_length=1)
    """A tier id: policy data, not a closed vocabulary of the code (explanations print it)."""
    threshold: Decimal = Field(ge=0)


class TierPolicy(_Frozen):
    tiers: tuple[TierLevel, ...]
    upgrade_hold_days: int = Field(ge=0)
    downgrade_grace_days: int = Field(ge=0)

    @model_validator(mode="after")
    def _ascending(self) -> TierPolicy:
        thresholds = [t.threshold for t in self.tiers]
        if not thresholds or thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
            raise ValueError("tiers must start at threshold 0 and ascend strictly")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be distinct: {names}")
        return self

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

    def met_by(self, aum: Decimal) -> int:
        """The rank of the highest tier whose threshold ``aum`` meets."""
        rank = 0
        for index, level in enumerate(self.tiers):
            if aum >= level.threshold:
                rank = index
        return rank


class LifecyclePolicy(_Frozen):
    churn_window_days: int
    stale_complaint_days: int
    drop_window_days: int
    drop_min_peak: Decimal
    drop_ratio: Decimal = Field(gt=0, le=1)
    silence_days: int
    established_tenure_days: int
    loyal_tenure_days: int
    loyal_min_tier: str


class PointsPolicy(_Frozen):
    deposit_hold_days: int
    deposit_unit: Decimal = Field(gt=0)
    long_time_deposit_months: int
    long_time_deposit_multiplier: int = Field(ge=1)
    referral: int = Field(ge=0)
    birthday: int = Field(ge=0)
    survey: int = Field(ge=0)
    expiry_years: int = Field(ge=1)


class ReferralPolicy(_Frozen):
    min_first_deposit: Decimal = Field(ge=0)


class Policy(_Frozen):
    id: str
    time_zone: str
    currency: str
    tier: TierPolicy
    lifecycle: LifecyclePolicy
    points: PointsPolicy
    referral: ReferralPolicy

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @model_validator(mode="after")
    def _loyal_tier_exists(self) -> Policy:
        self.tier.rank(self.lifecycle.loyal_min_tier)
        return self

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@functools.cache
def days(n: int) -> dt.timedelta:
    """Durations are exact (POLICY §3): n × 24 hours. Cached: projections ask for the same few many times."""
    return dt.timedelta(days=n)


@functools.cache
def load_policy(name_or_path: str = DEFAULT_POLICY) -> Policy:
    """A shipped policy by id, or a policy file by path."""
    path = Path(name_or_path)
    try:
        if path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
        else:
            text = resources.files("timeline").joinpath("policies", f"{name_or_path}.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"no policy {name_or_path!r}: give a shipped id ({DEFAULT_POLICY}) or a .json file"
        ) from None
    try:
        return Policy.model_validate(json.loads(text))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"policy {name_or_path!r} is invalid: {exc}") from None
