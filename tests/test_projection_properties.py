"""Properties of the projections over random valid histories (POLICY §3 order independence, §3 K, §6 voiding).

A history is drawn as a plan in business time (registration, deposits and
withdrawals that never go negative, visits, greetings, surveys, complaints
with resolutions, redemptions within what is surely available) over two
years, with many events sharing an instant. It is then sent to fresh stores
in different ways and the states compared as of many business times Q:

(a) any arrival order, split into batches, gives the state of business-order
    ingestion;
(b) the state as known at K is the state of a store that only ever received
    what was recorded by K;
(c) voiding events is the same as never having stored them.

Arrival orders are not fully arbitrary: an event whose acceptance depends on
order must not arrive before what makes it valid, or it is (rightly) rejected.
The orders drawn are random topological orders of these constraints:
withdrawals after every deposit into their account (earlier withdrawals may
come before or after: a missing withdrawal only raises balances), a
resolution after its filing, redemptions after every greeting and survey and
in business order among themselves (POLICY §2). Everything else — deposits,
visits, greetings, surveys, filings, profile updates, and withdrawals among
themselves and relative to redemptions — arrives in any order, late or early.

Where the policy makes stored order decide within one instant (two deposits into
one account, two birthday greetings, two surveys, two profile updates), the
plan avoids sharing an instant, since different answers are then intended.

Every copy of a history gets its own customer id and event ids (salted) and a
fresh in-memory store: the properties are the projections', and the stores'
part of them is the contract suite's (``tests/contract``). The points ledger is
compared as a multiset per instant, with the events of each line named by their
plan key.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.support.branch import Branch
from tests.support.keys import KEK
from timeline.application.states import StateReader
from timeline.crypto import KeyWrapper
from timeline.domain.errors import UnknownCustomer
from timeline.engine import Engine
from timeline.store.memory import MemoryEventStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2023, 1, 1, 9, 0, tzinfo=SHANGHAI).astimezone(dt.UTC)
SPAN_MINUTES = 730 * 24 * 60
OFFSETS = [dt.timezone(dt.timedelta(hours=8)), dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))]
ACCOUNTS = ["A1", "A2", "A3"]
RANK = {
    "customer.registered": 0,
    "deposit.made": 1,
    "customer.profile_updated": 2,
    "visit.recorded": 2,
    "greeting.sent": 2,
    "survey.completed": 2,
    "complaint.filed": 2,
    "withdrawal.made": 3,
    "complaint.resolved": 4,
    "points.redeemed": 5,
}
"""Business order within one instant: the order a teller would write them down."""
KINDS = (
    ["deposit"] * 3 + ["withdrawal"] * 3 + ["visit", "greeting", "survey", "complaint", "profile"] + ["redemption"] * 2
)
"""What the plan draws from, weighted: money moves most, and withdrawals (which need room) are often skipped."""
CUSTOMERS = itertools.count(1)
SCALE = float(os.environ.get("TIMELINE_PROPERTY_SCALE", "1"))
"""Multiply the example counts (e.g. 10 for a long hunt); the defaults keep the file well under a minute."""
EXAMPLES = max(1, round(100 * SCALE))


# --- plans -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    key: str
    type: str
    at: dt.datetime
    data: dict[str, Any]
    offset: int = 0
    after: tuple[str, ...] = ()
    """Keys of events that must have arrived before this one."""


@dataclass
class Plan:
    events: list[Planned] = field(default_factory=list)

    def business_order(self) -> list[Planned]:
        return sorted(self.events, key=lambda e: (e.at, RANK[e.type], self.events.index(e)))

    def by_key(self) -> dict[str, Planned]:
        return {e.key: e for e in self.events}


def _minutes(draw: Callable, pool: list[dt.datetime]) -> dt.datetime:
    """An instant: often one already used (so events share instants), else a fresh one."""
    if pool and draw(st.booleans()):
        return draw(st.sampled_from(pool))
    moment = START + dt.timedelta(minutes=draw(st.integers(1, SPAN_MINUTES)))
    pool.append(moment)
    return moment


def _balance_floor(events: list[Planned], account: str, moment: dt.datetime) -> Decimal:
    """The lowest balance of ``account`` at any instant ≥ ``moment`` (read after all events of an instant)."""
    moves = sorted(
        (e.at, Decimal(e.data["amount"]) * (1 if e.type == "deposit.made" else -1))
        for e in events
        if e.type in ("deposit.made", "withdrawal.made") and e.data["account_id"] == account
    )
    balance, lowest = Decimal(0), None
    instants = sorted({at for at, _ in moves} | {moment})
    index = 0
    for instant in instants:
        while index < len(moves) and moves[index][0] == instant:
            balance += moves[index][1]
            index += 1
        if instant >= moment:
            lowest = balance if lowest is None else min(lowest, balance)
    return lowest if lowest is not None else Decimal(0)


def never_negative(events: list[Planned]) -> bool:
    first = min(e.at for e in events)
    return all(_balance_floor(events, account, first) >= 0 for account in ACCOUNTS)


def _sure_points(events: list[Planned], moment: dt.datetime) -> int:
    """Points surely available at ``moment``: birthdays and surveys only (deposit points are a bonus).

    No bucket of 2023–2024 expires before 2026, after every planned redemption.
    """
    years = {
        e.at.astimezone(SHANGHAI).year
        for e in events
        if e.type == "greeting.sent" and e.at <= moment and e.data["occasion"] == "birthday"
    }
    months = {
        e.at.astimezone(SHANGHAI).strftime("%Y-%m") for e in events if e.type == "survey.completed" and e.at <= moment
    }
    spent = sum(e.data["points"] for e in events if e.type == "points.redeemed" and e.at <= moment)
    return 100 * len(years) + 20 * len(months) - spent


@st.composite
def plans(draw: Callable, max_events: int = 30) -> Plan:
    plan = Plan()
    events = plan.events
    pool: list[dt.datetime] = []
    serial = itertools.count(1)

    def add(kind: str, at: dt.datetime, data: dict[str, Any], after: tuple[str, ...] = ()) -> Planned:
        item = Planned(f"{kind.split('.')[0]}-{next(serial)}", kind, at, data, draw(st.integers(0, 2)), after)
        events.append(item)
        return item

    add(
        "customer.registered",
        START,
        {
            "name": "李四",
            "birth_date": "1975-06-15",
            "phone": "+86 139 0000 0000",
            "branch_id": "BR001",
            "relationship_manager": "RM001",
            "segment": "individual",
        },
    )
    budget = draw(st.integers(10, max_events))
    amounts = st.one_of(
        st.integers(1, 5_000_00), st.integers(10_000_00, 120_000_00), st.integers(400_000_00, 700_000_00)
    ).map(lambda cents: f"{Decimal(cents) / 100:.2f}")
    taken: set[tuple[str, Any]] = set()

    def unique(tag: str) -> dt.datetime:
        """An instant no other event of kind ``tag`` has (where stored order would decide)."""
        for _ in range(5):
            moment = _minutes(draw, pool)
            if (tag, moment) not in taken:
                break
        else:
            moment = START + dt.timedelta(minutes=draw(st.integers(1, SPAN_MINUTES)), seconds=len(events))
        taken.add((tag, moment))
        return moment

    for _ in range(budget):
        kind = draw(st.sampled_from(KINDS))
        if kind == "deposit":
            account = draw(st.sampled_from(ACCOUNTS))
            data = {"account_id": account, "amount": draw(amounts), "product": "demand"}
            if draw(st.booleans()):
                data.update(product="time", term_months=draw(st.sampled_from([3, 6, 12, 24, 36, 60])))
            add("deposit.made", unique(f"deposit:{account}"), data)
        elif kind == "withdrawal":
            funded = sorted({e.data["account_id"] for e in events if e.type == "deposit.made"})
            if not funded:
                continue
            account = draw(st.sampled_from(funded))
            moment = _minutes(draw, pool)
            room = _balance_floor(events, account, moment)
            if room <= 0:
                continue
            share = draw(st.sampled_from([Decimal(1), Decimal(1), Decimal("0.5"), Decimal("0.9"), Decimal("0.1")]))
            amount = (room * share).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            if amount <= 0:
                continue
            deposits = tuple(e.key for e in events if e.type == "deposit.made" and e.data["account_id"] == account)
            add("withdrawal.made", moment, {"account_id": account, "amount": f"{amount:.2f}"}, deposits)
        elif kind == "visit":
            data = {"channel": draw(st.sampled_from(["branch", "phone", "wechat", "home_visit"])), "purpose": "review"}
            add("visit.recorded", _minutes(draw, pool), data)
        elif kind == "greeting":
            occasion = draw(st.sampled_from(["birthday", "birthday", "festival"]))
            add("greeting.sent", unique("greeting"), {"occasion": occasion, "channel": "sms"})
        elif kind == "survey":
            add("survey.completed", unique("survey"), {"score": draw(st.integers(1, 5))})
        elif kind == "profile":
            data = {"relationship_manager": draw(st.sampled_from(["RM001", "RM002"])), "income_band": "B"}
            add("customer.profile_updated", unique("profile"), data)
        elif kind == "complaint":
            number = next(serial)
            moment = _minutes(draw, pool)
            data = {"complaint_id": f"K{number}", "category": "fees", "severity": "high", "description": "x"}
            filing = add("complaint.filed", moment, data)
            if draw(st.booleans()):
                later = moment + dt.timedelta(days=draw(st.sampled_from([0, 0, 3, 29, 31, 200])))
                resolution = {"complaint_id": f"K{number}", "resolution": "refund", "satisfied": draw(st.booleans())}
                add("complaint.resolved", later, resolution, (filing.key,))
        else:
            moment = _minutes(draw, pool)
            earlier = [e for e in events if e.type == "points.redeemed"]
            if earlier and max(e.at for e in earlier) > moment:
                continue  # POLICY §2: never earlier than a counted redemption
            sure = min(_sure_points(events, later) for later in [moment, *(e.at for e in earlier if e.at >= moment)])
            if sure < 1:
                continue
            points = draw(st.integers(1, sure))
            needs = tuple(e.key for e in events if e.type in ("greeting.sent", "survey.completed", "points.redeemed"))
            add("points.redeemed", moment, {"points": points, "reward": "tea"}, needs)
    # Redemptions need every greeting and survey to have arrived, including ones planned after them.
    earners = tuple(e.key for e in events if e.type in ("greeting.sent", "survey.completed"))
    plan.events = [
        Planned(e.key, e.type, e.at, e.data, e.offset, tuple(dict.fromkeys(e.after + earners)))
        if e.type == "points.redeemed"
        else e
        for e in events
    ]
    assert never_negative(plan.events)
    return plan


def arrival(draw: Callable, plan: Plan) -> list[Planned]:
    """A random order of the plan's events that keeps every prefix acceptable (see the module doc)."""
    registration, *rest = plan.business_order()
    shuffled = draw(st.permutations(rest))
    placed = {registration.key}
    order = [registration]
    waiting = list(shuffled)
    while waiting:
        ready = next(e for e in waiting if set(e.after) <= placed)
        waiting.remove(ready)
        placed.add(ready.key)
        order.append(ready)
    return order


def batches(draw: Callable, order: list[Planned]) -> list[list[Planned]]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    return [order[a:b] for a, b in itertools.pairwise(bounds) if a < b]


# --- copies of a plan in a store -------------------------------------------------------------------


class Copy:
    """One customer in one store that receives (some of) a plan's events under its own ids."""

    def __init__(self, branch: Branch, plan: Plan) -> None:
        self.branch = branch
        self.customer_id = f"P{next(CUSTOMERS)}"
        self.salt = uuid.uuid4()
        self.names = {self.event_id(e.key): e.key for e in plan.events}

    def event_id(self, key: str) -> uuid.UUID:
        return uuid.uuid5(self.salt, key)

    def wire(self, planned: Planned) -> dict[str, Any]:
        data = dict(planned.data)
        if "voids" in data:
            data = {"voids_event_id": str(self.event_id(data.pop("voids"))), "reason": "keyed in error"}
        return {
            "event_id": str(self.event_id(planned.key)),
            "type": planned.type,
            "customer_id": self.customer_id,
            "occurred_at": planned.at.astimezone(OFFSETS[planned.offset]).isoformat(),
            "source": "property-test",
            "data": data,
        }

    def send(self, events: list[Planned], batch_size: int = 1000) -> None:
        if events:
            self.branch.accept(*(self.wire(e) for e in events), batch_size=batch_size)

    def states(self, moments: list[dt.datetime], known_at: dt.datetime | None = None) -> list[tuple]:
        from timeline.projections.state import customer_state

        reader = StateReader(self.branch.engine.store, self.branch.engine.policy)
        history = reader.history(self.customer_id)
        known = known_at or self.branch.now
        return [self.summary(customer_state(history, reader.policy, q, known)) for q in moments]

    def summary(self, state: Any) -> tuple:
        def keys(ids: Any) -> tuple[str, ...]:
            return tuple(sorted(self.names.get(i, str(i)) for i in ids))

        points = state.points
        ledger = sorted((line.at, line.kind, line.points, line.bucket, keys(line.event_ids)) for line in points.ledger)
        changes = [(c.at, c.from_tier, c.to_tier) for c in state.tier.changes]
        pending = (state.tier.pending.at, state.tier.pending.to_tier) if state.tier.pending else None
        return (
            ("tier", state.tier.tier, changes),
            ("lifecycle", state.lifecycle.stage, state.lifecycle.rule),
            ("points", points.available, dict(points.buckets), points.overdraft, ledger),
            ("aum", state.aum, {a: v for a, v in state.balances.items() if v}),
            ("last_activity_at", state.last_activity_at),
            ("pending", pending, sorted((p.vests_at, p.points_if_held, keys([p.event_id])) for p in points.pending)),
            ("next_change_at", state.next_change_at),
        )


class Stores:
    """Fresh in-memory stores for one example, one per copy of its history."""

    def fresh(self, plan: Plan) -> Copy:
        return Copy(Branch(Engine(MemoryEventStore(), KeyWrapper(KEK))), plan)


def run(count: int, body: Callable[[Callable, Stores], None]) -> None:
    """Run ``body`` as a Hypothesis test with ``count`` examples, each with fresh stores."""
    from hypothesis import given

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        body(data.draw, Stores())

    check()


def moments(draw: Callable, plan: Plan) -> list[dt.datetime]:
    """Business times to compare at: instants of the plan and around the policy's windows and calendars."""
    around = set()
    for e in plan.events:
        for delta in (0, -1, 7 * 86400, 30 * 86400, 30 * 86400 - 1, 90 * 86400, 180 * 86400):
            around.add(e.at + dt.timedelta(seconds=delta))
    around |= {dt.datetime(year, 1, 1, tzinfo=SHANGHAI).astimezone(dt.UTC) for year in (2024, 2025, 2026)}
    around = {m for m in around if m >= START}
    chosen = draw(st.lists(st.sampled_from(sorted(around)), min_size=6, max_size=14, unique=True))
    last = max(e.at for e in plan.events)
    return sorted({*chosen, last, last + dt.timedelta(days=400)})


# --- (a) arrival order ---------------------------------------------------------------------------


def test_any_arrival_order_gives_the_state_of_business_order():
    def body(draw: Callable, stores: Stores) -> None:
        plan = draw(plans())
        reference = stores.fresh(plan)
        reference.send(plan.business_order())
        others = []
        for _ in range(2):
            copy = stores.fresh(plan)
            size = draw(st.sampled_from([1000, 1, 3]))
            for batch in batches(draw, arrival(draw, plan)):
                copy.send(batch, batch_size=size)
            others.append(copy)
        qs = moments(draw, plan)
        expected = reference.states(qs)
        for copy in others:
            assert copy.states(qs) == expected

    run(EXAMPLES, body)


# --- (b) as known at K ---------------------------------------------------------------------------


def test_state_as_known_at_k_equals_a_store_that_only_received_what_was_recorded_by_k():
    def body(draw: Callable, stores: Stores) -> None:
        plan = draw(plans())
        parts = batches(draw, arrival(draw, plan))
        first_k = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        ks = [first_k + dt.timedelta(days=10 * i, seconds=draw(st.integers(0, 86400))) for i in range(len(parts))]
        whole = stores.fresh(plan)
        for k, part in zip(ks, parts, strict=True):
            whole.branch.recording_at(k.isoformat())
            whole.send(part)
        qs = moments(draw, plan)
        cut = draw(st.integers(1, len(parts)))
        partial = stores.fresh(plan)
        for part in parts[:cut]:
            partial.send(part)
        # K exactly at the recording of the last batch received, and just before the next one.
        next_k = ks[cut] if cut < len(ks) else ks[-1] + dt.timedelta(days=365)
        expected = partial.states(qs)
        for k in (ks[cut - 1], next_k - dt.timedelta(microseconds=1)):
            assert whole.states(qs, known_at=k) == expected
        # Before the first batch was recorded, the customer is unknown.
        with pytest.raises(UnknownCustomer):
            whole.states(qs[:1], known_at=ks[0] - dt.timedelta(microseconds=1))

    run(EXAMPLES, body)


# --- (c) voiding ---------------------------------------------------------------------------------


def voidable(draw: Callable, plan: Plan) -> list[str]:
    """Keys to void, in an order the rules accept, such that the rest is a valid history on its own."""
    events = plan.business_order()[1:]
    redeeming = any(e.type == "points.redeemed" for e in events)
    chosen: list[str] = []
    for e in draw(st.permutations(events)):
        if not draw(st.integers(0, 3)) == 0:
            continue
        if redeeming and e.type in ("greeting.sent", "survey.completed"):
            continue  # a redemption may rest on them: voided it would be an overdraft, never stored it is a reject
        if e.type == "deposit.made":
            rest = [x for x in plan.events if x.key not in {*chosen, e.key}]
            if not never_negative(rest):
                continue
        chosen.append(e.key)
    by_key = plan.by_key()
    # A filing may be voided only once its resolution is: void the resolution too, first.
    for key in list(chosen):
        if by_key[key].type == "complaint.filed":
            resolution = next((x for x in events if x.type == "complaint.resolved" and x.after == (key,)), None)
            if resolution is not None and resolution.key not in chosen:
                chosen.append(resolution.key)
    return sorted(chosen, key=lambda k: by_key[k].type != "complaint.resolved")


def test_voiding_an_event_equals_never_having_stored_it():
    def body(draw: Callable, stores: Stores) -> None:
        plan = draw(plans())
        voided = voidable(draw, plan)
        by_key = plan.by_key()
        corrections = [
            Planned(f"void-{key}", "correction.recorded", max(e.at for e in plan.events), {"voids": key}, 1)
            for key in voided
        ]
        plan_with_corrections = Plan(plan.events + corrections)
        kept = [e for e in plan.business_order() if e.key not in set(voided)]

        corrected = stores.fresh(plan_with_corrections)
        corrected.branch.recording_at("2026-06-01T00:00:00Z")
        for batch in batches(draw, arrival(draw, plan)):
            corrected.send(batch)
        qs = moments(draw, plan)
        before = corrected.states(qs)
        corrected.branch.recording_at("2026-07-01T00:00:00Z")
        corrected.send(corrections, batch_size=draw(st.sampled_from([1000, 1])))

        never = stores.fresh(plan)
        never.send(kept)
        assert corrected.states(qs) == never.states(qs), [by_key[k].type for k in voided]
        # As known before the corrections, the voided events still count.
        assert corrected.states(qs, known_at=dt.datetime(2026, 6, 30, tzinfo=dt.UTC)) == before

    run(EXAMPLES, body)
