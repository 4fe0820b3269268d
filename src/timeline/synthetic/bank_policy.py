"""What the simulated branch takes from the bank's policy: tier thresholds, points, referral and complaint rules.

The generator reads these from :class:`timeline.domain.policy.Policy` rather
than keeping copies, so a bank's own policy file changes the behaviour it
simulates (who reaches which tier, how often RMs call, what points are
redeemable), and the history stays valid under that policy.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from timeline.domain.policy import Policy

SERVICE_LEVELS = 4
"""The branch serves four levels (mass, affluent, high net worth, private); a policy's tiers map onto them."""
LEVEL_WEIGHTS = {
    "individual": (0.58, 0.30, 0.105, 0.015),
    "business": (0.30, 0.42, 0.24, 0.04),
}
"""The share of customers planned at each service level, per segment."""
SMALLEST_TARGET = 2_000.0
"""Yuan: the lowest AUM a customer aims at."""
TOP_TIER_SPREAD = 20 / 3
"""The richest customers aim at up to this many times the top threshold."""
LOCAL_OFFSET = 8 * 3_600
"""Simulation times are seconds since 1970-01-01 00:00 in +08:00 (the branch's local time)."""


@dataclass(frozen=True)
class BranchPolicy:
    thresholds: tuple[float, ...]
    """Yuan of AUM at which each tier starts, ascending from 0."""
    birthday_points: int
    survey_points: int
    expiry_years: int
    referral_first_deposit: float
    """Yuan: the first deposit that qualifies a referral."""
    stale_complaint_days: int
    zone: ZoneInfo

    @classmethod
    def of(cls, policy: Policy) -> BranchPolicy:
        return cls(
            thresholds=tuple(float(t.threshold) for t in policy.tier.tiers),
            birthday_points=policy.points.birthday,
            survey_points=policy.points.survey,
            expiry_years=policy.points.expiry_years,
            referral_first_deposit=float(policy.referral.min_first_deposit),
            stale_complaint_days=policy.lifecycle.stale_complaint_days,
            zone=policy.zone,
        )

    def rank(self, yuan: float) -> int:
        """The tier an AUM of ``yuan`` meets."""
        return bisect.bisect_right(self.thresholds, yuan) - 1

    def level(self, rank: int) -> int:
        """The service level (0–3) of a tier: the first tier is mass, the last private banking."""
        top = len(self.thresholds) - 1
        return round(rank * (SERVICE_LEVELS - 1) / top) if top else 0

    def target_ranges(self) -> tuple[tuple[float, float], ...]:
        """(low, high) yuan of the AUM a customer of each tier aims at: clear of the thresholds around it."""
        t = self.thresholds
        ranges = []
        for rank, start in enumerate(t):
            nxt = t[rank + 1] if rank + 1 < len(t) else None
            low = start * 1.1 if rank else min(SMALLEST_TARGET, nxt * 0.04 if nxt else SMALLEST_TARGET)
            high = nxt * 0.9 if nxt else max(start, SMALLEST_TARGET) * TOP_TIER_SPREAD
            if low >= high:  # thresholds close together: anywhere between them
                low, high = max(start, 1.0), nxt if nxt else start * TOP_TIER_SPREAD
            ranges.append((low, high))
        return tuple(ranges)

    def tier_weights(self, segment: str) -> tuple[float, ...]:
        """How likely a customer of ``segment`` is planned in each tier."""
        levels = [self.level(rank) for rank in range(len(self.thresholds))]
        base = LEVEL_WEIGHTS[segment]
        return tuple(base[level] / levels.count(level) for level in levels)

    def calendar(self, t: int) -> tuple[int, int]:
        """The year and month of simulation time ``t`` in the policy's time zone (points buckets and caps)."""
        local = dt.datetime.fromtimestamp(t - LOCAL_OFFSET, self.zone)
        return local.year, local.month

    def expired(self, bucket_year: int, year: int) -> bool:
        """Whether points earned in ``bucket_year`` have expired in ``year`` (POLICY §4: at the start of Y + n)."""
        return bucket_year + self.expiry_years <= year
