"""Synthetic branch histories: realistic input events for demos, tests and benchmarks.

:func:`generate_branch` simulates a bank branch group in China (three branches,
five relationship managers each) over a period ending at 18:00 (+08:00) on a
given day, and yields the input events as a sender would write them, in the
order they are *recorded* (the file order):

* mostly business order: every customer's timeline is a small discrete-event
  simulation; the simulations advance together 30 days at a time and each
  window's events are sorted by ``occurred_at`` (then customer, then the
  customer's own order), so memory holds one window, never the whole history;
* with late arrivals: about 2% of visits, greetings, surveys and profile
  updates reach the file 1–10 days after their ``occurred_at``;
* with the ledger's habits: most follow-ups are completed around their due
  date, some weeks late, and a few forgotten until the next quarterly ledger
  review after they are 60 days overdue closes them; most complaints are
  resolved within 20 days, some escalate for months, about 1% never are;
  before an erasure the RM resolves and closes whatever is still open.

The output is a pure function of ``(customers, years, seed, end)``: one
``random.Random(seed)`` plans the branch, each customer then draws from a
generator of its own seeded from the plan, and the current time is never read.

Every event is valid under RULES.md §2 in file order: a registration first and
once; no account balance negative at any instant of business time (voided
duplicates excluded); complaint and follow-up ids unique per customer and
closed at most once, at or after they were opened; redemptions in
non-decreasing business time and never more than a conservative lower bound
of the points available (only birthday greetings and surveys that are not
late are counted, by calendar year, expiring after three years, consumed
oldest first); corrections only void a duplicated visit or deposit recorded
before them; referrals name another customer who registers later; an erasure
comes only when every balance is zero and is the customer's last event;
nothing occurs after the end.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import IO, Any

import orjson

__all__ = ["generate_branch", "last_full_day", "write_jsonl"]

DAY = 86_400
HOUR = 3_600
MINUTE = 60
_EPOCH = dt.date(1970, 1, 1).toordinal()
"""Times inside the generator are whole seconds since 1970-01-01 00:00 in +08:00."""

BRANCHES = ("BR001", "BR002", "BR003")
RMS_PER_BRANCH = 5
TELLERS_PER_BRANCH = 4

EXISTING_SHARE = 0.35
"""Customers already with the bank when the history starts (registered in its first two weeks)."""
BUSINESS_SHARE = 0.12
CHURN_SHARE = 0.05
ERASE_SHARE_OF_CHURNED = 0.25
REFERRED_SHARE = 0.12
LATE_SHARE = 0.02
WINDOW = 30 * DAY

TIER_RANGES = (  # (low, high) yuan of the target AUM per tier, log-uniform inside
    (2_000, 45_000),
    (55_000, 450_000),
    (550_000, 5_500_000),
    (6_500_000, 40_000_000),
)
TIER_WEIGHTS = {
    "individual": (0.58, 0.30, 0.105, 0.015),
    "business": (0.30, 0.42, 0.24, 0.04),
}
TERMS = (3, 6, 12, 24, 36, 60)
TERM_WEIGHTS = (15, 20, 30, 15, 12, 8)
TERM_RATES = {3: 1.05, 6: 1.25, 12: 1.45, 24: 1.65, 36: 1.95, 60: 2.0}  # % per year

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范"
    "金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏飞建国建华志强晓明海燕婷婷子涵浩然"
    "欣怡梓萱宇轩思远一鸣雨桐佳怡俊杰文博嘉怡天佑"
)
CITIES = ("上海", "苏州", "杭州", "南京", "宁波", "无锡", "深圳", "广州")
FIRM_WORDS = ("恒信", "华泰", "宏达", "鑫源", "永安", "瑞丰", "金桥", "盛世", "新华", "东方", "德隆", "中联")
INDUSTRIES = ("贸易", "科技", "餐饮管理", "建筑工程", "物流", "电子", "服饰", "医疗器械", "文化传媒", "食品")
MOBILE_PREFIXES = (
    "130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159", "166",
    "176", "177", "180", "181", "186", "187", "188", "189", "198", "199",
)  # fmt: skip

OCCUPATIONS = (
    "教师", "医生", "工程师", "公务员", "个体经营者", "企业主", "退休", "销售经理", "会计", "律师", "护士",
    "程序员", "自由职业", "设计师", "司机", "餐饮从业者",
)  # fmt: skip
INCOME_BANDS = ("<100k", "100k-300k", "300k-1m", "1m-5m", ">5m")
RISK = ("conservative", "balanced", "aggressive")
VISIT_CHANNELS = ("branch", "phone", "wechat", "home_visit", "sms", "email", "event")
VISIT_WEIGHTS = (30, 25, 20, 8, 5, 4, 8)
VISIT_PURPOSES = (
    "回访", "理财产品推介", "定期存款到期提醒", "资产配置沟通", "上门拜访", "客户活动邀请", "开户资料补充",
    "大额存单咨询", "贷款需求了解", "保险产品介绍", "账户安全提示", "客户沙龙：养老规划",
)  # fmt: skip
VISIT_NOTES = (
    "客户对收益率较关注，建议下月再跟进。",
    "客户有一笔他行存款即将到期，表示考虑转入。",
    "客户近期资金需求较大，暂不配置长期产品。",
    "家属同行，介绍了家庭账户服务。",
    "客户希望了解养老金融产品。",
    "已发送产品说明书，客户表示满意。",
    "客户反映手机银行操作不便，已演示。",
)
GREETING_CHANNELS = ("wechat", "sms", "phone", "card")
BIRTHDAY_GIFTS = ("生日蛋糕券", "鲜花一束", "定制保温杯", "生日贺卡")
FESTIVAL_GIFTS = {"元旦": "新年台历", "春节": "新春福袋", "中秋": "中秋月饼礼盒", "国庆": "国庆纪念品"}
COMPLAINT_CATEGORIES = ("服务态度", "排队时间", "手续费", "系统故障", "产品说明不清", "理财收益", "信用卡账单")
COMPLAINT_TEXTS = {
    "服务态度": "客户反映柜员办理业务时态度冷淡，解释不耐心。",
    "排队时间": "客户在网点等候超过一小时，认为叫号系统不合理。",
    "手续费": "客户对跨行转账手续费有异议，认为事先未告知。",
    "系统故障": "手机银行转账失败但显示扣款，客户要求尽快核实。",
    "产品说明不清": "客户认为理财产品风险说明不充分。",
    "理财收益": "客户对理财产品实际收益低于预期表示不满。",
    "信用卡账单": "客户对账单中一笔消费有疑问，要求调查。",
}
RESOLUTIONS = (
    "已向客户致歉并进行服务整改。",
    "已核实并退还相关费用。",
    "系统问题已修复，款项已到账。",
    "已重新讲解产品条款，客户理解。",
    "已调整网点排班，增加高峰期窗口。",
)
SURVEY_COMMENTS = {
    1: ("非常不满意", "问题一直没有解决"),
    2: ("等待时间太长", "服务有待提高"),
    3: ("一般", "还可以"),
    4: ("服务不错", "理财经理很专业"),
    5: ("非常满意", "感谢客户经理的耐心讲解", "服务周到"),
}
FOLLOWUP_OUTCOMES = (
    "已联系客户，资金已到账",
    "客户已转入定期存款",
    "客户暂无需求，下季度再联系",
    "已完成资料补充",
    "客户已购买推荐产品",
    "已确认，客户表示满意",
)
LAPSED_OUTCOME = "季度台账清理：逾期未跟进，关闭"
LAPSED_AFTER_DAYS = 60
"""A forgotten follow-up is closed at the first quarterly ledger review this long after its due date."""
LEAVING_OUTCOME = "客户销户，跟进事项关闭"
LEAVING_RESOLUTION = "客户销户前已沟通处理完毕。"
REWARDS = ("食用油一桶", "电影票两张", "话费充值50元", "定制保温杯", "超市购物卡100元", "视频会员月卡", "品牌雨伞")
SURVEY_SCORES = (1, 2, 3, 4, 5)
SURVEY_WEIGHTS = (3, 5, 15, 37, 40)
_VISIT_CUM = tuple(accumulate(VISIT_WEIGHTS))
_SURVEY_CUM = tuple(accumulate(SURVEY_WEIGHTS))
_TERM_CUM = tuple(accumulate(TERM_WEIGHTS))

SPRING_FESTIVAL = {
    2010: (2, 14), 2011: (2, 3), 2012: (1, 23), 2013: (2, 10), 2014: (1, 31), 2015: (2, 19), 2016: (2, 8),
    2017: (1, 28), 2018: (2, 16), 2019: (2, 5), 2020: (1, 25), 2021: (2, 12), 2022: (2, 1), 2023: (1, 22),
    2024: (2, 10), 2025: (1, 29), 2026: (2, 17), 2027: (2, 6), 2028: (1, 26), 2029: (2, 13), 2030: (2, 3),
}  # fmt: skip
MID_AUTUMN = {
    2010: (9, 22), 2011: (9, 12), 2012: (9, 30), 2013: (9, 19), 2014: (9, 8), 2015: (9, 27), 2016: (9, 15),
    2017: (10, 4), 2018: (9, 24), 2019: (9, 13), 2020: (10, 1), 2021: (9, 21), 2022: (9, 10), 2023: (9, 29),
    2024: (9, 17), 2025: (10, 6), 2026: (9, 25), 2027: (9, 15), 2028: (10, 3), 2029: (9, 22), 2030: (9, 12),
}  # fmt: skip
"""Lunar festivals by year; outside the table, Feb 5 and Sep 20 stand in."""


def write_jsonl(events: Iterable[dict[str, Any]], fh: IO[str]) -> int:
    """Write one compact JSON line per event (UTF-8 text, not ``\\u`` escapes); return how many."""
    dumps = orjson.dumps
    count = 0
    buffer: list[bytes] = []
    for event in events:
        buffer.append(dumps(event, default=str))
        count += 1
        if len(buffer) >= 4096:
            buffer.append(b"")
            fh.write(b"\n".join(buffer).decode())
            buffer.clear()
    if buffer:
        buffer.append(b"")
        fh.write(b"\n".join(buffer).decode())
    return count


CLOSE_OF_BUSINESS = dt.time(18, 0)
BRANCH_TZ = dt.timezone(dt.timedelta(hours=8))


def last_full_day(now: dt.datetime) -> dt.date:
    """The last day whose business has closed (18:00 +08:00) by ``now``.

    A history ending on it holds nothing later than ``now``, so ingesting it at
    once rejects nothing as occurring in the future.
    """
    local = now.astimezone(BRANCH_TZ)
    return local.date() if local.time() >= CLOSE_OF_BUSINESS else local.date() - dt.timedelta(days=1)


def generate_branch(customers: int, years: float, seed: int, end: dt.date) -> Iterator[dict[str, Any]]:
    """Yield the input events of a simulated branch in recording order (see the module doc)."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if not years > 0:
        raise ValueError("years must be positive")
    rng = random.Random(seed)
    world = _World(end, years)
    plans = _plan(rng, customers, world)
    # Time windows: every customer runs its actions of the window in one go (cache-friendly),
    # then the window's events are put in file order. An event of file position (key) k is
    # emitted by an action at or before k, so it is always collected in k's window.
    batch, late = world.batch, world.late
    active: list[_Customer] = []
    joined = 0
    start = world.start_day * DAY
    while start <= world.end_s:
        until = min(start + WINDOW, world.end_s + 1)
        while joined < len(plans) and plans[joined].reg < until:
            active.append(_Customer(plans[joined], world))
            joined += 1
        active = [c for c in active if c.advance(until)]
        while late and late[0][0] < until:
            batch.append(heapq.heappop(late))
        batch.sort()
        for item in batch:
            yield item[3]
        batch.clear()
        start = until
    while late:  # late beyond the end of business on the last day
        yield heapq.heappop(late)[3]


class _World:
    """What every customer shares: the period, the calendar, cached text of instants."""

    def __init__(self, end: dt.date, years: float) -> None:
        self.end_day = end.toordinal() - _EPOCH
        self.end_s = self.end_day * DAY + CLOSE_OF_BUSINESS.hour * HOUR
        span = max(1, round(years * 365.25))
        self.start_day = self.end_day - span + 1
        self.span_days = span
        self._days: dict[int, str] = {}
        self._hms: dict[int, str] = {}
        self.festivals = self._festivals()
        self.batch: list[tuple[int, int, int, dict[str, Any]]] = []
        """Events of the current window: (file position, customer index, sequence, event)."""
        self.late: list[tuple[int, int, int, dict[str, Any]]] = []
        """A heap of the events that reach the file later than they occurred."""

    def iso(self, t: int) -> str:
        d, s = divmod(t, DAY)
        try:
            day = self._days[d]
        except KeyError:
            day = self._days[d] = dt.date.fromordinal(d + _EPOCH).isoformat()
        try:
            hms = self._hms[s]
        except KeyError:
            h, rest = divmod(s, HOUR)
            m, sec = divmod(rest, MINUTE)
            hms = self._hms[s] = f"T{h:02d}:{m:02d}:{sec:02d}+08:00"
        return day + hms

    def date(self, t: int) -> dt.date:
        return dt.date.fromordinal(t // DAY + _EPOCH)

    def _festivals(self) -> list[tuple[int, str]]:
        first = dt.date.fromordinal(self.start_day + _EPOCH).year
        last = dt.date.fromordinal(self.end_day + _EPOCH).year
        days = []
        for year in range(first, last + 1):
            days.append((dt.date(year, 1, 1), "元旦"))
            days.append((dt.date(year, *SPRING_FESTIVAL.get(year, (2, 5))), "春节"))
            days.append((dt.date(year, *MID_AUTUMN.get(year, (9, 20))), "中秋"))
            days.append((dt.date(year, 10, 1), "国庆"))
        days.sort()
        return [(d.toordinal() - _EPOCH, name) for d, name in days]


class _Plan:
    """One customer as the branch plans it before simulating anybody."""

    __slots__ = (
        "index", "customer_id", "reg", "existing", "segment", "branch", "rm", "target", "churn_at", "erase_at",
        "referred", "referrals", "seed",
    )  # fmt: skip

    def __init__(self) -> None:
        self.referrals: list[tuple[int, str]] = []
        self.referred = False
        self.churn_at: int | None = None
        self.erase_at: int | None = None


def _biz_time(rng: random.Random, day: int) -> int:
    """A moment of business hours (09:00–17:30) on a day."""
    return day * DAY + 9 * HOUR + int(rng.random() * (8 * HOUR + 30 * MINUTE))


def _plan(rng: random.Random, customers: int, world: _World) -> list[_Plan]:
    start, span, end_day = world.start_day, world.span_days, world.end_day
    plans = []
    for _ in range(customers):
        p = _Plan()
        p.existing = rng.random() < EXISTING_SHARE
        if p.existing:
            reg_day = start + rng.randrange(min(14, span))
        else:
            reg_day = start + rng.randrange(span)
        p.reg = _biz_time(rng, reg_day)
        p.segment = "business" if rng.random() < BUSINESS_SHARE else "individual"
        p.branch = rng.randrange(len(BRANCHES))
        p.rm = p.branch * RMS_PER_BRANCH + rng.randrange(RMS_PER_BRANCH)
        tier = rng.choices(range(4), TIER_WEIGHTS[p.segment])[0]
        low, high = TIER_RANGES[tier]
        p.target = math.exp(rng.uniform(math.log(low), math.log(high)))
        life = end_day - reg_day
        if life > 240 and rng.random() < CHURN_SHARE:
            churn_day = reg_day + rng.randint(180, life - 20)
            p.churn_at = _biz_time(rng, churn_day)
            if rng.random() < ERASE_SHARE_OF_CHURNED and end_day - churn_day > 45:
                p.erase_at = _biz_time(rng, churn_day + rng.randint(40, min(200, end_day - churn_day)))
        p.seed = rng.getrandbits(64)
        plans.append(p)
    plans.sort(key=lambda p: p.reg)
    width = max(6, len(str(customers)))
    for i, p in enumerate(plans):
        p.index = i
        p.customer_id = f"C{i + 1:0{width}d}"
    # 老带新: some newcomers are brought by an earlier customer who is still active.
    for p in plans:
        if p.existing or p.index == 0 or p.reg < (start + 30) * DAY or rng.random() >= REFERRED_SHARE:
            continue
        reg_day = p.reg // DAY
        t_ref = _biz_time(rng, reg_day - rng.randint(0, 14))
        if t_ref >= p.reg:
            t_ref = p.reg - rng.randint(5 * MINUTE, 2 * HOUR)
        for _ in range(6):
            a = plans[rng.randrange(p.index)]
            if a.reg < t_ref - HOUR and (a.churn_at is None or a.churn_at > t_ref + DAY):
                a.referrals.append((t_ref, p.customer_id))
                p.referred = True
                break
    return plans


def _quarter_after(day: int) -> int:
    """The first day of the calendar quarter after the one holding ``day`` (days since 1970-01-01)."""
    d = dt.date.fromordinal(day + _EPOCH)
    month = (d.month - 1) // 3 * 3 + 4
    start = dt.date(d.year + 1, 1, 1) if month > 12 else dt.date(d.year, month, 1)
    return start.toordinal() - _EPOCH


def _cents(rng: random.Random, yuan: float) -> int:
    """A plausible amount in cents: big ones round, small ones to the cent."""
    if yuan >= 20_000 and rng.random() < 0.8:
        cents = round(yuan / 1000) * 100_000
    elif yuan >= 1_000 and rng.random() < 0.7:
        cents = round(yuan / 100) * 10_000
    else:
        cents = int(yuan * 100)
    return max(cents, 100)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


_UUID_MASK = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
_UUID_BITS = 0x00000000_0000_4000_8000_000000000000


class _Customer:
    """One customer's timeline as a discrete-event simulation: actions on an agenda, in business time."""

    def __init__(self, plan: _Plan, world: _World) -> None:
        self.p = plan
        self.w = world
        self.rng = random.Random(plan.seed)
        self.cid = plan.customer_id
        self.end_s = world.end_s
        self.churn_at = plan.churn_at if plan.churn_at is not None else world.end_s + 1
        self.erase_at = plan.erase_at if plan.erase_at is not None else world.end_s + 1
        self.agenda: list[tuple[int, int, Callable[[int, Any], None], Any]] = []
        self.batch = world.batch
        self.late = world.late
        self.iso = world.iso
        self.index = plan.index
        self.seq = 0
        self.balances: dict[str, int] = {}
        self.aum = 0
        self.accounts = 0
        self.target = plan.target
        self.rm = plan.rm
        self.buckets: dict[int, int] = {}
        self.birthday_years: set[int] = set()
        self.survey_months: set[tuple[int, int]] = set()
        self.complaints = 0
        self.followups = 0
        self.open_complaints: set[str] = set()
        self.open_followups: set[str] = set()
        self.done = False
        tier = 0 if plan.target < 50_000 else 1 if plan.target < 500_000 else 2 if plan.target < 6_000_000 else 3
        self.tier = tier
        self.visit_mean = (100, 50, 25, 14)[tier] * DAY
        self.followup_mean = (150, 70, 35, 20)[tier] * DAY
        business = plan.segment == "business"
        self.flow_mean = (9 if business else 28) * DAY
        self.flow_share = 0.12 if business else 0.06
        self.at(plan.reg, self.register)

    # -- plumbing -----------------------------------------------------------------

    def at(self, t: int, fn: Callable[[int, Any], None], arg: Any = None) -> None:
        if t <= self.end_s and t < self.erase_at:
            self.seq += 1
            heapq.heappush(self.agenda, (t, self.seq, fn, arg))

    def after(self, t: int, mean: float, fn: Callable[[int, Any], None], arg: Any = None) -> None:
        """Schedule at a random business moment about ``mean`` seconds after ``t`` (exponential gap)."""
        rng = self.rng
        day = (t + int(rng.expovariate(1.0 / mean))) // DAY
        when = day * DAY + 9 * HOUR + int(rng.random() * (8 * HOUR + 30 * MINUTE))
        if when <= t:
            when = t + MINUTE + int(rng.random() * HOUR)
        if when <= self.end_s and when < self.erase_at:
            self.seq += 1
            heapq.heappush(self.agenda, (when, self.seq, fn, arg))

    def soon(self, t: int, low: int, high: int) -> int:
        """A business moment roughly ``low``–``high`` seconds after ``t``, always after ``t``."""
        rng = self.rng
        when = _biz_time(rng, (t + rng.randint(low, high)) // DAY)
        return when if when > t else t + rng.randint(MINUTE, HOUR)

    def emit(
        self, t: int, kind: str, data: dict[str, Any], source: str, actor: str, late_ok: bool = False
    ) -> tuple[str, bool]:
        """Record an event occurring at ``t``; return its id and whether it reaches the file late."""
        rng = self.rng
        h = f"{(rng.getrandbits(128) & _UUID_MASK) | _UUID_BITS:032x}"
        event_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        self.seq += 1
        event = {
            "event_id": event_id,
            "type": kind,
            "customer_id": self.cid,
            "occurred_at": self.iso(t),
            "source": source,
            "actor": actor,
            "data": data,
        }
        if late_ok and rng.random() < LATE_SHARE:
            delayed = t + DAY + int(rng.random() * 9 * DAY)
            if delayed < self.erase_at:
                heapq.heappush(self.late, (delayed, self.index, self.seq, event))
                return event_id, True
        self.batch.append((t, self.index, self.seq, event))
        return event_id, False

    @property
    def rm_id(self) -> str:
        return f"RM{self.rm + 1:03d}"

    def teller(self) -> str:
        return f"TL{self.p.branch + 1}{int(self.rng.random() * TELLERS_PER_BRANCH) + 1:02d}"

    def advance(self, until: int) -> bool:
        """Run the actions before ``until``; false once nothing more can happen."""
        agenda = self.agenda
        pop = heapq.heappop
        while agenda and agenda[0][0] < until:
            t, _, fn, arg = pop(agenda)
            fn(t, arg)
            if self.done:
                return False
        return bool(agenda)

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
        birth = reg_date - dt.timedelta(days=age * 365 + rng.randrange(365))
        self.birth = birth
        data = {
            "name": name,
            "birth_date": birth.isoformat(),
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
            self.seq += 1
            heapq.heappush(self.agenda, (p.erase_at, self.seq, self.erase, None))

    def phone(self) -> str:
        rng = self.rng
        if self.p.segment == "business" and rng.random() < 0.5:
            return f"+86 21 {rng.randrange(5000, 7000)} {rng.randrange(10000):04d}"
        return f"+86 {rng.choice(MOBILE_PREFIXES)} {rng.randrange(10000):04d} {rng.randrange(10000):04d}"

    def kyc(self, t: int, _: Any) -> None:
        rng = self.rng
        data = {
            "risk_preference": rng.choices(RISK, (45, 40, 15))[0],
            "occupation": rng.choice(OCCUPATIONS),
            "income_band": INCOME_BANDS[min(4, max(0, self.tier + rng.randint(-1, 1)))],
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
            data["income_band"] = INCOME_BANDS[min(4, max(0, self.tier + rng.randint(-1, 1)))]
        elif roll < 0.92:
            self.rm = self.p.branch * RMS_PER_BRANCH + rng.randrange(RMS_PER_BRANCH)
            data["relationship_manager"] = self.rm_id
        else:
            data["key_person"] = self.tier >= 2 or rng.random() < 0.3
        self.emit(t, "customer.profile_updated", data, "crm", self.rm_id, late_ok=True)
        self.after(t, 365 * DAY, self.profile)

    # -- money ---------------------------------------------------------------------

    def deposit(self, t: int, account: str, cents: int, term: int | None = None) -> str:
        data: dict[str, Any] = {"account_id": account, "amount": _money(cents), "product": "demand"}
        if term is not None:
            data["product"] = "time"
            data["term_months"] = term
        event_id, _ = self.emit(t, "deposit.made", data, "core-banking", self.teller())
        self.balances[account] = self.balances.get(account, 0) + cents
        self.aum += cents
        return event_id

    def withdraw(self, t: int, account: str, cents: int) -> None:
        balance = self.balances[account]
        assert 0 < cents <= balance, (self.cid, account, cents, balance)
        self.emit(t, "withdrawal.made", {"account_id": account, "amount": _money(cents)}, "core-banking", self.teller())
        self.balances[account] = balance - cents
        self.aum -= cents

    def first_deposit(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        yuan = self.target * rng.uniform(0.35, 0.85)
        if self.p.referred and rng.random() < 0.9:
            yuan = max(yuan, rng.uniform(10_000, 30_000))
        self.accounts = 1
        self.deposit(t, "A1", _cents(rng, yuan))
        self.at(self.soon(t, 3 * DAY, 45 * DAY), self.top_up)
        self.after(t, self.flow_mean, self.cash_in)
        self.after(t, self.flow_mean, self.cash_out)
        if self.target >= 30_000:
            self.after(t, 90 * DAY if self.target < 500_000 else 45 * DAY, self.open_time_deposit)

    def top_up(self, t: int, _: Any) -> None:
        if t < self.churn_at:
            self.deposit(t, "A1", _cents(self.rng, self.target * self.rng.uniform(0.1, 0.45)))

    def cash_in(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        self.target *= math.exp(rng.gauss(0, 0.04))
        share = self.flow_share * rng.uniform(0.3, 1.7)
        if self.aum < self.target * 80:  # AUM (cents) below 80% of target (yuan)
            share *= 1.8
        cents = _cents(rng, self.target * share)
        self.deposit(t, "A1", cents)
        if rng.random() < 0.004:
            self.duplicate_deposit(t, cents)
        self.after(t, self.flow_mean, self.cash_in)

    def duplicate_deposit(self, t: int, cents: int) -> None:
        """The same deposit keyed in twice; the copy is voided a few days later."""
        fix = self.soon(t, HOUR, 5 * DAY)
        if fix > self.end_s or fix >= self.erase_at:
            return
        data = {"account_id": "A1", "amount": _money(cents), "product": "demand"}
        copy_id, _ = self.emit(t, "deposit.made", data, "core-banking", self.teller())
        self.at(fix, self.correct, (copy_id, "柜面重复录入存款，冲正", "core-banking"))

    def cash_out(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        balance = self.balances.get("A1", 0)
        if rng.random() < 0.03:
            cents = int(balance * rng.uniform(0.6, 1.0))
        else:
            share = self.flow_share * rng.uniform(0.3, 1.7)
            if self.aum > self.target * 120:
                share *= 1.8
            cents = min(balance, _cents(rng, self.target * share))
        if cents > 0:
            self.withdraw(t, "A1", cents)
        self.after(t, self.flow_mean, self.cash_out)

    def open_time_deposit(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        balance = self.balances.get("A1", 0)
        cents = _cents(rng, balance / 100 * rng.uniform(0.3, 0.7))
        if 500_000 <= cents <= balance:  # at least 5,000 yuan
            self.accounts += 1
            account = f"A{self.accounts}"
            term = rng.choices(TERMS, cum_weights=_TERM_CUM)[0]
            self.withdraw(t, "A1", cents)
            self.deposit(t, account, cents, term)
            self.at(self.maturity(t, term), self.mature, (account, term))
        self.after(t, 120 * DAY if self.target < 500_000 else 60 * DAY, self.open_time_deposit)

    def maturity(self, t: int, term: int) -> int:
        d = self.w.date(t)
        month = d.month - 1 + term
        year, month = d.year + month // 12, month % 12 + 1
        day = min(d.day, 28)
        return (dt.date(year, month, day).toordinal() - _EPOCH) * DAY + t % DAY

    def mature(self, t: int, arg: tuple[str, int]) -> None:
        account, term = arg
        principal = self.balances.get(account, 0)
        if t >= self.churn_at or principal == 0:
            return
        rng = self.rng
        interest = int(principal * TERM_RATES[term] * term / 1200)
        self.withdraw(t, account, principal)
        if rng.random() < 0.4:  # rolled over into the same account
            self.deposit(t, account, principal + interest, term)
            self.at(self.maturity(t, term), self.mature, (account, term))
        else:
            self.deposit(t, "A1", principal + interest)

    def churn(self, t: int, _: Any) -> None:
        """Dormancy: everything is withdrawn, then the customer goes silent."""
        for account, balance in sorted(self.balances.items()):
            if balance > 0:
                self.withdraw(t, account, balance)

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
            "channel": rng.choices(VISIT_CHANNELS, cum_weights=_VISIT_CUM)[0],
            "purpose": rng.choice(VISIT_PURPOSES),
        }
        if rng.random() < 0.4:
            data["notes"] = rng.choice(VISIT_NOTES)
        twice = rng.random() < 0.005
        fix = self.soon(t, HOUR, 7 * DAY)
        twice = twice and fix <= self.end_s and fix < self.erase_at
        self.emit(t, "visit.recorded", data, "crm", self.rm_id, late_ok=not twice)
        if twice:
            copy_id, _ = self.emit(t, "visit.recorded", dict(data), "crm", self.rm_id)
            self.at(fix, self.correct, (copy_id, "同一次拜访重复登记", "crm"))
        if rng.random() < 0.2:
            self.at(self.soon(t, HOUR, 3 * DAY), self.survey, False)
        self.after(t, self.visit_mean, self.visit)

    def correct(self, t: int, arg: tuple[str, str, str]) -> None:
        target, reason, source = arg
        self.emit(t, "correction.recorded", {"voids_event_id": target, "reason": reason}, source, self.rm_id)

    def survey(self, t: int, follow: Any, score: int | None = None) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        if score is None:
            score = rng.choices(SURVEY_SCORES, cum_weights=_SURVEY_CUM)[0]
        data: dict[str, Any] = {"score": score}
        if rng.random() < 0.5:
            data["comment"] = rng.choice(SURVEY_COMMENTS[score])
        _, late = self.emit(t, "survey.completed", data, "survey", self.rm_id, late_ok=True)
        d = self.w.date(t)
        if not late and (d.year, d.month) not in self.survey_months:
            self.survey_months.add((d.year, d.month))
            self.earn(d.year, 20)
        if follow is None:  # the standalone survey process, not one after a visit or complaint
            self.after(t, 240 * DAY, self.survey)

    def complaint_survey(self, t: int, satisfied: bool) -> None:
        self.survey(t, False, self.rng.choice((4, 5)) if satisfied else self.rng.choice((1, 2, 3)))

    def complaint(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        self.complaints += 1
        complaint_id = f"CP{self.p.index + 1}-{self.complaints}"
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
        elif roll < 0.99:  # escalated: slow, and at risk once 30 days old
            self.at(self.soon(t, 35 * DAY, 120 * DAY), self.resolve, complaint_id)
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
        followup_id = f"FU{self.p.index + 1}-{self.followups}"
        due = self.w.date(t) + dt.timedelta(days=rng.randint(3, 45))
        reason = rng.choice(
            (
                f"他行定期存款{due.isoformat()}到期，跟进转存",
                f"资金预计{due.month}月中旬到账",
                f"理财产品{due.isoformat()}到期回访",
                "生日礼品领取确认",
                "大额存单续存沟通",
                "开户资料补充",
                "投诉处理满意度回访",
            )
        )
        data = {"followup_id": followup_id, "due_date": due.isoformat(), "reason": reason}
        self.emit(t, "followup.scheduled", data, "crm", self.rm_id)
        self.open_followups.add(followup_id)
        due_day = due.toordinal() - _EPOCH
        roll = rng.random()
        if roll < 0.8:
            when, outcome = _biz_time(rng, due_day - rng.randint(0, 3)), None
        elif roll < 0.96:
            when, outcome = _biz_time(rng, due_day + rng.randint(2, 30)), None
        else:  # forgotten: closed at a quarterly ledger review (台账清理)
            when, outcome = _biz_time(rng, _quarter_after(due_day + LAPSED_AFTER_DAYS)), LAPSED_OUTCOME
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

    # -- greetings and points ------------------------------------------------------

    def next_birthday(self, t: int, year: int | None = None) -> None:
        """Schedule the first birthday after ``t``, in ``year`` or later."""
        year = self.w.date(t).year if year is None else year
        for y in (year, year + 1):
            month, day = self.birth.month, self.birth.day
            if month == 2 and day == 29 and not _leap(y):
                day = 28
            when = (dt.date(y, month, day).toordinal() - _EPOCH) * DAY + 9 * HOUR + self.rng.randrange(2 * HOUR)
            if when > t:
                self.at(when, self.birthday)
                return

    def birthday(self, t: int, _: Any) -> None:
        rng = self.rng
        if rng.random() < 0.95:
            data = {"occasion": "birthday", "channel": rng.choice(GREETING_CHANNELS)}
            if self.tier >= 1 and rng.random() < 0.6:
                data["gift"] = rng.choice(BIRTHDAY_GIFTS)
            _, late = self.emit(t, "greeting.sent", data, "crm", self.rm_id, late_ok=True)
            year = self.w.date(t).year
            if not late and year not in self.birthday_years:
                self.birthday_years.add(year)
                self.earn(year, 100)
        self.next_birthday(t, self.w.date(t).year + 1)

    def next_anniversary(self, t: int) -> None:
        d = self.w.date(self.p.reg)
        year = self.w.date(t).year + 1
        day = min(d.day, 28)
        self.at((dt.date(year, d.month, day).toordinal() - _EPOCH) * DAY + 10 * HOUR, self.anniversary)

    def anniversary(self, t: int, _: Any) -> None:
        if self.rng.random() < 0.3:
            data = {"occasion": "anniversary", "channel": self.rng.choice(GREETING_CHANNELS)}
            self.emit(t, "greeting.sent", data, "crm", self.rm_id, late_ok=True)
        self.next_anniversary(t)

    def next_festival(self, t: int) -> None:
        festivals = self.w.festivals
        lo, hi = 0, len(festivals)
        day = t // DAY
        while lo < hi:  # the first festival after today
            mid = (lo + hi) // 2
            if festivals[mid][0] <= day:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(festivals):
            self.at(festivals[lo][0] * DAY + 8 * HOUR + self.rng.randrange(3 * HOUR), self.festival, lo)

    def festival(self, t: int, index: int) -> None:
        rng = self.rng
        if rng.random() < 0.7:
            name = self.w.festivals[index][1]
            data = {"occasion": "festival", "channel": rng.choice(GREETING_CHANNELS)}
            if self.tier >= 2 and rng.random() < 0.7:
                data["gift"] = FESTIVAL_GIFTS[name]
            self.emit(t, "greeting.sent", data, "crm", self.rm_id, late_ok=True)
        self.next_festival(t)

    def earn(self, year: int, points: int) -> None:
        self.buckets[year] = self.buckets.get(year, 0) + points

    def available(self, year: int) -> int:
        return sum(v for y, v in self.buckets.items() if y >= year - 2)

    def redeem(self, t: int, _: Any) -> None:
        if t >= self.churn_at:
            return
        rng = self.rng
        year = self.w.date(t).year
        available = self.available(year)
        if available >= 100:
            choices = [n for n in (100, 150, 200, 300, 500, 800, 1000) if n <= available]
            points = rng.choice(choices)
            self.emit(t, "points.redeemed", {"points": points, "reward": rng.choice(REWARDS)}, "loyalty", self.rm_id)
            left = points
            for y in sorted(self.buckets):
                if y < year - 2 or left == 0:
                    continue
                take = min(left, self.buckets[y])
                self.buckets[y] -= take
                left -= take
            assert left == 0
        self.after(t, 300 * DAY, self.redeem)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
