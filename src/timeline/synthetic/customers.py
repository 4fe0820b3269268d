"""A customer's behaviour: registration, profile, visits, surveys, complaints, follow-ups, referrals, erasure.

How often the relationship manager calls and follows up depends on the tier
the customer's AUM target meets under the policy (mapped onto the branch's
four service levels). The ledger's habits: most follow-ups are completed
around their due date, some weeks late, a few forgotten until a quarterly
ledger review closes them; most complaints are resolved within weeks, some
escalate past the policy's stale-complaint age, about 1% never are; before an
erasure the RM resolves and closes whatever is still open.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from timeline.synthetic.accounts import Banking
from timeline.synthetic.loyalty import Loyalty
from timeline.synthetic.plan import Plan
from timeline.synthetic.simulation import DAY, HOUR, MINUTE, World, biz_time, day_of, quarter_after
from timeline.synthetic.vocab import (
    BRANCHES,
    CITIES,
    COMPLAINT_CATEGORIES,
    COMPLAINT_TEXTS,
    FIRM_WORDS,
    FOLLOWUP_OUTCOMES,
    FOLLOWUP_REASONS,
    GIVEN,
    INCOME_BANDS,
    INDUSTRIES,
    LAPSED_OUTCOME,
    LEAVING_OUTCOME,
    LEAVING_RESOLUTION,
    MOBILE_PREFIXES,
    OCCUPATIONS,
    RESOLUTIONS,
    RISK,
    RMS_PER_BRANCH,
    SURNAMES,
    SURVEY_COMMENTS,
    SURVEY_CUM,
    SURVEY_SCORES,
    VISIT_CHANNELS,
    VISIT_CUM,
    VISIT_NOTES,
    VISIT_PURPOSES,
)

LAPSED_AFTER_DAYS = 60
"""A forgotten follow-up is closed at the first quarterly ledger review this long after its due date."""
VISIT_MEAN_DAYS = (100, 50, 25, 14)
FOLLOWUP_MEAN_DAYS = (150, 70, 35, 20)
"""Mean days between an RM's visits and follow-ups, per service level."""
DUPLICATE_VISIT_SHARE = 0.005


class Customer(Banking, Loyalty):
    """One simulated customer, following its :class:`~timeline.synthetic.plan.Plan`."""

    def __init__(self, plan: Plan, world: World) -> None:
        super().__init__(world, plan.index, plan.customer_id, plan.seed, plan.erase_at)
        self.p = plan
        self.reg = plan.reg
        self.churn_at = plan.churn_at if plan.churn_at is not None else world.end_s + 1
        self.init_accounts()
        self.init_points()
        self.target = plan.target
        self.rm = plan.rm
        self.complaints = 0
        self.followups = 0
        self.open_complaints: set[str] = set()
        self.open_followups: set[str] = set()
        self.level = world.policy.level(world.policy.rank(plan.target))
        self.visit_mean = VISIT_MEAN_DAYS[self.level] * DAY
        self.followup_mean = FOLLOWUP_MEAN_DAYS[self.level] * DAY
        business = plan.segment == "business"
        self.flow_mean = (9 if business else 28) * DAY
        self.flow_share = 0.12 if business else 0.06
        self.at(plan.reg, self.register)

    @property
    def rm_id(self) -> str:
        return f"RM{self.rm + 1:03d}"

    # -- registration and profile ----------------------------------------------------

    def register(self, t: int, _: Any) -> None:
        p, rng = self.p, self.rng
        reg_date = self.w.date(t)
        if p.segment == "business":
            name = f"{rng.choice(CITIES)}{rng.choice(FIRM_WORDS)}{rng.choice(INDUSTRIES)}有限公司"
            age = rng.randint(28, 65)
        else:
            given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
            name = rng.choice(SURNAMES) + given
            age = rng.choices((rng.randint(18, 30), rng.randint(31, 55), rng.randint(56, 85)), (25, 50, 25))[0]
        self.birth = reg_date - dt.timedelta(days=age * 365 + rng.randrange(365))
        data = {
            "name": name,
            "birth_date": self.birth.isoformat(),
            "phone": self.phone(),
            "branch_id": BRANCHES[p.branch],
            "relationship_manager": self.rm_id,
            "segment": p.segment,
        }
        self.emit(t, "customer.registered", data, "core-banking", self.teller())
        if p.segment == "individual" and rng.random() < 0.7:
            self.at(self.soon(t, 10 * MINUTE, 3 * DAY), self.kyc)
        if rng.random() < (0.97 if p.referred else 0.9 if not p.existing else 0.98):
            self.at(self.soon(t, 0, 3 * DAY) if p.existing else self.soon(t, 10 * MINUTE, 20 * DAY), self.first_deposit)
        elif rng.random() < 0.5:
            self.at(self.soon(t, 30 * DAY, 300 * DAY), self.first_deposit)
        self.after(t, self.visit_mean, self.visit)
        self.after(t, 400 * DAY, self.complaint)
        self.after(t, self.followup_mean, self.followup)
        self.after(t, 240 * DAY, self.survey)
        self.after(t, 365 * DAY, self.profile)
        self.after(t, 300 * DAY, self.redeem)
        self.next_birthday(t)
        self.next_anniversary(t)
        self.next_festival(t)
        for t_ref, referred in p.referrals:
            self.at(t_ref, self.refer, referred)
        if p.churn_at is not None:
            self.at(p.churn_at, self.churn)
        if p.erase_at is not None:
            self.at_erasure(p.erase_at, self.erase)

    def phone(self) -> str:
        rng = self.rng
        if self.p.segment == "business" and rng.random() < 0.5:
            return f"+86 21 {rng.randrange(5000, 7000)} {rng.randrange(10000):04d}"
        return f"+86 {rng.choice(MOBILE_PREFIXES)} {rng.randrange(10000):04d} {rng.randrange(10000):04d}"

    def income_band(self) -> str:
        return INCOME_BANDS[min(len(INCOME_BANDS) - 1, max(0, self.level + self.rng.randint(-1, 1)))]

    def kyc(self, t: int, _: Any) -> None:
        rng = self.rng
        data = {
            "risk_preference": rng.choices(RISK, (45, 40, 15))[0],
            "occupation": rng.choice(OCCUPATIONS),
            "income_band": self.income_band(),
        }
        self.emit(t, "customer.profile_updated", data, "crm", self.rm_id, late_ok=True)

    def profile(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        data: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.3:
            data["phone"] = self.phone()
        elif roll < 0.5:
            data["risk_preference"] = rng.choice(RISK)
        elif roll < 0.65:
            data["occupation"] = rng.choice(OCCUPATIONS)
        elif roll < 0.8:
            data["income_band"] = self.income_band()
        elif roll < 0.92:
            self.rm = self.p.branch * RMS_PER_BRANCH + rng.randrange(RMS_PER_BRANCH)
            data["relationship_manager"] = self.rm_id
        else:
            data["key_person"] = self.level >= 2 or rng.random() < 0.3
        self.emit(t, "customer.profile_updated", data, "crm", self.rm_id, late_ok=True)
        self.after(t, 365 * DAY, self.profile)

    def erase(self, t: int, _: Any) -> None:
        """Close the customer's file: settle what is still open, then erase (an erased stream takes nothing)."""
        assert all(b == 0 for b in self.balances.values()), self.cid
        for complaint_id in sorted(self.open_complaints):
            self.resolve(t, complaint_id, LEAVING_RESOLUTION)
        for followup_id in sorted(self.open_followups):
            self.complete(t, (followup_id, LEAVING_OUTCOME))
        self.emit(t, "customer.erased", {"reason": "客户申请销户并要求删除个人信息"}, "privacy-office", "DPO01")
        self.done = True

    # -- relationship --------------------------------------------------------------------

    def visit(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        data = {
            "channel": rng.choices(VISIT_CHANNELS, cum_weights=VISIT_CUM)[0],
            "purpose": rng.choice(VISIT_PURPOSES),
        }
        if rng.random() < 0.4:
            data["notes"] = rng.choice(VISIT_NOTES)
        twice = rng.random() < DUPLICATE_VISIT_SHARE
        fix = self.soon(t, HOUR, 7 * DAY)
        twice = twice and fix <= self.end_s and fix < self.erase_at
        self.emit(t, "visit.recorded", data, "crm", self.rm_id, late_ok=not twice)
        if twice:
            copy_id, _ = self.emit(t, "visit.recorded", dict(data), "crm", self.rm_id)
            self.at(fix, self.correct, (copy_id, "同一次拜访重复登记", "crm"))
        if rng.random() < 0.2:
            self.at(self.soon(t, HOUR, 3 * DAY), self.survey, False)
        self.after(t, self.visit_mean, self.visit)

    def survey(self, t: int, follow: Any, score: int | None = None) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        if score is None:
            score = rng.choices(SURVEY_SCORES, cum_weights=SURVEY_CUM)[0]
        data: dict[str, Any] = {"score": score}
        if rng.random() < 0.5:
            data["comment"] = rng.choice(SURVEY_COMMENTS[score])
        _, late = self.emit(t, "survey.completed", data, "survey", self.rm_id, late_ok=True)
        if not late:
            self.survey_points(t)
        if follow is None:  # the standalone survey process, not one after a visit or complaint
            self.after(t, 240 * DAY, self.survey)

    def complaint_survey(self, t: int, satisfied: bool) -> None:
        self.survey(t, False, self.rng.choice((4, 5)) if satisfied else self.rng.choice((1, 2, 3)))

    def complaint(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        self.complaints += 1
        complaint_id = f"CP{self.index + 1}-{self.complaints}"
        category = rng.choice(COMPLAINT_CATEGORIES)
        data = {
            "complaint_id": complaint_id,
            "category": category,
            "severity": rng.choices(("low", "medium", "high"), (50, 38, 12))[0],
            "description": COMPLAINT_TEXTS[category],
        }
        self.emit(t, "complaint.filed", data, rng.choice(("call-center", "crm", "wechat")), self.rm_id)
        self.open_complaints.add(complaint_id)
        roll = rng.random()
        if roll < 0.9:
            self.at(self.soon(t, 2 * HOUR, 20 * DAY), self.resolve, complaint_id)
        elif roll < 0.99:  # escalated: slow, and so stale (at risk) for a while
            stale = self.w.policy.stale_complaint_days
            self.at(self.soon(t, (stale + 5) * DAY, 4 * stale * DAY), self.resolve, complaint_id)
        self.after(t, 400 * DAY, self.complaint)

    def resolve(self, t: int, complaint_id: str, resolution: str | None = None) -> None:
        if complaint_id not in self.open_complaints:
            return
        rng = self.rng
        self.open_complaints.discard(complaint_id)
        satisfied = rng.random() < 0.7
        data = {
            "complaint_id": complaint_id,
            "resolution": resolution or rng.choice(RESOLUTIONS),
            "satisfied": satisfied,
        }
        self.emit(t, "complaint.resolved", data, "crm", self.rm_id)
        if resolution is None and rng.random() < 0.6:
            self.at(self.soon(t, HOUR, 2 * DAY), self.complaint_survey, satisfied)

    def followup(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        self.followups += 1
        followup_id = f"FU{self.index + 1}-{self.followups}"
        due = self.w.date(t) + dt.timedelta(days=rng.randint(3, 45))
        reason = rng.choice(FOLLOWUP_REASONS).format(due=due.isoformat(), month=due.month)
        data = {"followup_id": followup_id, "due_date": due.isoformat(), "reason": reason}
        self.emit(t, "followup.scheduled", data, "crm", self.rm_id)
        self.open_followups.add(followup_id)
        due_day = day_of(due)
        roll = rng.random()
        if roll < 0.8:
            when, outcome = biz_time(rng, due_day - rng.randint(0, 3)), None
        elif roll < 0.96:
            when, outcome = biz_time(rng, due_day + rng.randint(2, 30)), None
        else:  # forgotten: closed at a quarterly ledger review (台账清理)
            when, outcome = biz_time(rng, quarter_after(due_day + LAPSED_AFTER_DAYS)), LAPSED_OUTCOME
        self.at(max(when, t + rng.randint(HOUR, 4 * HOUR)), self.complete, (followup_id, outcome))
        self.after(t, self.followup_mean, self.followup)

    def complete(self, t: int, arg: tuple[str, str | None]) -> None:
        followup_id, outcome = arg
        if followup_id not in self.open_followups:
            return
        self.open_followups.discard(followup_id)
        data = {"followup_id": followup_id, "outcome": outcome or self.rng.choice(FOLLOWUP_OUTCOMES)}
        self.emit(t, "followup.completed", data, "crm", self.rm_id)

    def refer(self, t: int, referred: str) -> None:
        self.emit(t, "referral.made", {"referred_customer_id": referred}, "crm", self.rm_id)
