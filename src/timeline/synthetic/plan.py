"""The branch plan: who the customers are, when they register, what they aim at, who refers whom, who leaves.

Drawn from one ``random.Random`` before anybody is simulated, so each
customer's own simulation can then run from a seed of its own.
"""

from __future__ import annotations

import math
import random

from timeline.synthetic.simulation import DAY, HOUR, MINUTE, World, biz_time
from timeline.synthetic.vocab import BRANCHES, RMS_PER_BRANCH

EXISTING_SHARE = 0.35
"""Customers already with the bank when the history starts (registered in its first two weeks)."""
BUSINESS_SHARE = 0.12
CHURN_SHARE = 0.05
ERASE_SHARE_OF_CHURNED = 0.25
REFERRED_SHARE = 0.12


class Plan:
    """One customer as the branch plans it before simulating anybody."""

    __slots__ = (
        "index", "customer_id", "reg", "existing", "segment", "branch", "rm", "target", "churn_at", "erase_at",
        "referred", "referrals", "seed",
    )  # fmt: skip

    def __init__(self) -> None:
        self.referrals: list[tuple[int, str]] = []
        """(when, referred customer id): the referrals this customer makes."""
        self.referred = False
        self.churn_at: int | None = None
        self.erase_at: int | None = None


def plan_branch(rng: random.Random, customers: int, world: World) -> list[Plan]:
    """Every customer's plan, in registration order, with ids numbered in that order."""
    start, span, end_day = world.start_day, world.span_days, world.end_day
    ranges = world.policy.target_ranges()
    weights = {segment: world.policy.tier_weights(segment) for segment in ("individual", "business")}
    tiers = range(len(ranges))
    plans = []
    for _ in range(customers):
        p = Plan()
        p.existing = rng.random() < EXISTING_SHARE
        if p.existing:
            reg_day = start + rng.randrange(min(14, span))
        else:
            reg_day = start + rng.randrange(span)
        p.reg = biz_time(rng, reg_day)
        p.segment = "business" if rng.random() < BUSINESS_SHARE else "individual"
        p.branch = rng.randrange(len(BRANCHES))
        p.rm = p.branch * RMS_PER_BRANCH + rng.randrange(RMS_PER_BRANCH)
        low, high = ranges[rng.choices(tiers, weights[p.segment])[0]]
        p.target = math.exp(rng.uniform(math.log(low), math.log(high)))
        life = end_day - reg_day
        if life > 240 and rng.random() < CHURN_SHARE:
            churn_day = reg_day + rng.randint(180, life - 20)
            p.churn_at = biz_time(rng, churn_day)
            if rng.random() < ERASE_SHARE_OF_CHURNED and end_day - churn_day > 45:
                p.erase_at = biz_time(rng, churn_day + rng.randint(40, min(200, end_day - churn_day)))
        p.seed = rng.getrandbits(64)
        plans.append(p)
    plans.sort(key=lambda p: p.reg)
    width = max(6, len(str(customers)))
    for i, p in enumerate(plans):
        p.index = i
        p.customer_id = f"C{i + 1:0{width}d}"
    _plan_referrals(rng, plans, start)
    return plans


def _plan_referrals(rng: random.Random, plans: list[Plan], start_day: int) -> None:
    """老带新: some newcomers are brought by an earlier customer who is still active."""
    for p in plans:
        if p.existing or p.index == 0 or p.reg < (start_day + 30) * DAY or rng.random() >= REFERRED_SHARE:
            continue
        reg_day = p.reg // DAY
        t_ref = biz_time(rng, reg_day - rng.randint(0, 14))
        if t_ref >= p.reg:
            t_ref = p.reg - rng.randint(5 * MINUTE, 2 * HOUR)
        for _ in range(6):
            a = plans[rng.randrange(p.index)]
            if a.reg < t_ref - HOUR and (a.churn_at is None or a.churn_at > t_ref + DAY):
                a.referrals.append((t_ref, p.customer_id))
                p.referred = True
                break
