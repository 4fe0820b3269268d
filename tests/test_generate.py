"""The branch generator: deterministic, schema-valid, and valid under POLICY §2 in file order."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from timeline.application.jsonl import loads
from timeline.application.keyring import load_history
from timeline.crypto import KeyWrapper
from timeline.domain.events import ENGINE_ONLY_TYPES, EVENT_TYPES, parse_event
from timeline.domain.policy import Policy, load_policy
from timeline.engine import Engine
from timeline.store import open_store
from timeline.synthetic.generate import LAPSED_OUTCOME, arrivals, generate_branch, last_full_day, write_jsonl

END = dt.date(2025, 12, 31)
LAST = dt.datetime(2025, 12, 31, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture(scope="module")
def branch() -> list[dict]:
    """About 200 customers over 2 years: every event type appears."""
    return list(generate_branch(200, 2, 1, END))


def instant(event: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(event["occurred_at"])


def policy_with(**changes: dict) -> Policy:
    """The shipped policy with some numbers changed, e.g. ``points={"birthday": 0}``."""
    data = load_policy().model_dump(mode="json")
    for section, values in changes.items():
        data[section].update(values)
    return Policy.model_validate({**data, "id": "test-changed"})


def by_customer(events: list[dict]) -> dict[str, list[dict]]:
    streams: dict[str, list[dict]] = collections.defaultdict(list)
    for e in events:
        streams[e["customer_id"]].append(e)
    return streams


def test_same_arguments_same_output_and_another_seed_another_output():
    first = io.StringIO()
    count = write_jsonl(generate_branch(60, 1, 7, END), first)
    second = io.StringIO()
    assert write_jsonl(generate_branch(60, 1, 7, END), second) == count
    assert first.getvalue() == second.getvalue()
    assert first.getvalue().count("\n") == count
    assert list(generate_branch(60, 1, 8, END)) != list(generate_branch(60, 1, 7, END))
    assert list(generate_branch(60, 1, 7, dt.date(2025, 12, 30))) != list(generate_branch(60, 1, 7, END))


def test_the_order_does_not_depend_on_the_simulation_window(monkeypatch):
    import timeline.synthetic.generate

    expected = list(generate_branch(80, 1, 11, END))
    for days in (1, 400):
        monkeypatch.setattr(timeline.synthetic.generate, "WINDOW", days * timeline.synthetic.generate.DAY)
        assert list(generate_branch(80, 1, 11, END)) == expected


def test_jsonl_is_compact_utf8_one_event_per_line(branch):
    out = io.StringIO()
    assert write_jsonl(branch[:500], out) == 500
    lines = out.getvalue().splitlines()
    assert len(lines) == 500
    assert ", " not in lines[0] and "\\u" not in out.getvalue()
    assert [loads(line) for line in lines] == branch[:500]
    assert lines == [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in branch[:500]]


def test_every_event_validates_against_its_model(branch):
    for event in branch:
        parsed = parse_event(event)
        assert parsed.event_id is not None
        assert event["occurred_at"].endswith("+08:00")
        assert instant(event) <= LAST
        assert set(event) == {"event_id", "type", "customer_id", "occurred_at", "source", "actor", "data"}


def test_event_ids_are_unique(branch):
    assert len({e["event_id"] for e in branch}) == len(branch)


def test_every_listed_type_appears_and_no_engine_only_type(branch):
    types = collections.Counter(e["type"] for e in branch)
    assert set(types) == set(EVENT_TYPES) - ENGINE_ONLY_TYPES
    data = [e["data"] for e in branch]
    assert {d["channel"] for d, e in zip(data, branch, strict=True) if e["type"] == "visit.recorded"} == {
        "branch", "home_visit", "phone", "wechat", "sms", "email", "event"
    }  # fmt: skip
    assert {d["occasion"] for d, e in zip(data, branch, strict=True) if e["type"] == "greeting.sent"} == {
        "birthday", "festival", "anniversary"
    }  # fmt: skip
    terms = {d.get("term_months") for d, e in zip(data, branch, strict=True) if e["type"] == "deposit.made"}
    assert terms == {None, 3, 6, 12, 24, 36, 60}
    assert {e["data"]["segment"] for e in branch if e["type"] == "customer.registered"} == {"individual", "business"}


def test_one_birthday_greeting_a_year_on_the_birthday(branch):
    births = {e["customer_id"]: e["data"]["birth_date"] for e in branch if e["type"] == "customer.registered"}
    years = collections.Counter()
    for e in branch:
        if e["type"] == "greeting.sent" and e["data"]["occasion"] == "birthday":
            years[(e["customer_id"], e["occurred_at"][:4])] += 1
            birthday = births[e["customer_id"]][5:]
            assert e["occurred_at"][5:10] == (birthday if birthday != "02-29" else e["occurred_at"][5:10])
    assert years and set(years.values()) == {1}


def test_registration_comes_first_and_once_and_nothing_occurs_before_it(branch):
    for customer, events in by_customer(branch).items():
        assert events[0]["type"] == "customer.registered", customer
        assert sum(e["type"] == "customer.registered" for e in events) == 1
        registered = instant(events[0])
        assert all(instant(e) >= registered for e in events)


def test_some_events_arrive_late_but_only_the_harmless_kinds(branch):
    latest = None
    late = []
    for e in branch:
        at = instant(e)
        if latest is not None and at < latest - dt.timedelta(hours=12):
            late.append(e)
        latest = at if latest is None else max(latest, at)
    assert len(late) > 20
    late_types = {e["type"] for e in late}
    assert late_types <= {"visit.recorded", "greeting.sent", "survey.completed", "customer.profile_updated"}
    assert len(late_types) >= 3
    # Within a customer, only those kinds ever go back in time.
    for events in by_customer(branch).values():
        strict = [e for e in events if e["type"] not in late_types]
        assert strict == sorted(strict, key=instant)


def test_balances_are_never_negative_at_any_instant(branch):
    voided = {e["data"]["voids_event_id"] for e in branch if e["type"] == "correction.recorded"}
    for customer, events in by_customer(branch).items():
        money = [e for e in events if e["type"] in ("deposit.made", "withdrawal.made") and e["event_id"] not in voided]
        # Business time, events of an instant taking effect together.
        per_instant: dict[tuple[str, dt.datetime], Decimal] = collections.defaultdict(Decimal)
        for e in money:
            sign = 1 if e["type"] == "deposit.made" else -1
            per_instant[(e["data"]["account_id"], instant(e))] += sign * Decimal(e["data"]["amount"])
        balance: dict[str, Decimal] = collections.defaultdict(Decimal)
        for (account, _), change in sorted(per_instant.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            balance[account] += change
            assert balance[account] >= 0, customer
        # File order too: every prefix the engine sees is already fine.
        running: dict[str, Decimal] = collections.defaultdict(Decimal)
        for e in money:
            sign = 1 if e["type"] == "deposit.made" else -1
            running[e["data"]["account_id"]] += sign * Decimal(e["data"]["amount"])
            assert running[e["data"]["account_id"]] >= 0, customer
        for e in money:
            amount = e["data"]["amount"]
            assert Decimal(amount) > 0 and len(amount.split(".")[1]) == 2


def peak_tiers(events: list[dict], policy: Policy) -> collections.Counter:
    """How many customers' peak AUM reached each tier of ``policy`` (by rank)."""
    peaks: collections.Counter = collections.Counter()
    for stream in by_customer(events).values():
        aum = peak = Decimal(0)
        for e in sorted(stream, key=instant):
            if e["type"] in ("deposit.made", "withdrawal.made"):
                aum += Decimal(e["data"]["amount"]) * (1 if e["type"] == "deposit.made" else -1)
                peak = max(peak, aum)
        peaks[policy.tier.met_by(peak)] += 1
    return peaks


def test_some_customers_reach_every_tier(branch):
    peaks = peak_tiers(branch, load_policy())
    assert peaks[0] > peaks[1] > peaks[2] > peaks[3] > 0


def test_customers_aim_around_the_tier_thresholds_of_the_policy(branch):
    tiers = [{"name": t.name, "threshold": str(t.threshold * 10)} for t in load_policy().tier.tiers]
    richer = policy_with(tier={"tiers": tiers})
    events = list(generate_branch(200, 2, 1, END, richer))
    peaks = peak_tiers(events, richer)
    assert peaks[0] > peaks[1] > peaks[2] > peaks[3] > 0
    assert peak_tiers(events, load_policy())[3] > peak_tiers(branch, load_policy())[3]


def test_a_policy_with_more_tiers_gets_customers_in_each():
    tiers = [
        {"name": f"T{n}", "threshold": str(threshold)}
        for n, threshold in enumerate((0, 20_000, 100_000, 1e6, 1e7, 5e7))
    ]
    six = policy_with(tier={"tiers": tiers}, lifecycle={"loyal_min_tier": "T1"})
    peaks = peak_tiers(list(generate_branch(300, 1, 2, END, six)), six)
    assert all(peaks[rank] > 0 for rank in range(6)), peaks


def test_complaints_and_followups_open_once_and_close_once_afterwards(branch):
    for customer, events in by_customer(branch).items():
        for opened, closed, key in (
            ("complaint.filed", "complaint.resolved", "complaint_id"),
            ("followup.scheduled", "followup.completed", "followup_id"),
        ):
            opens: dict[str, dt.datetime] = {}
            closes: set[str] = set()
            for e in events:
                if e["type"] == opened:
                    assert e["data"][key] not in opens, customer
                    opens[e["data"][key]] = instant(e)
                elif e["type"] == closed:
                    ident = e["data"][key]
                    assert ident in opens and opens[ident] <= instant(e), customer
                    assert ident not in closes
                    closes.add(ident)
    filed = {
        (e["customer_id"], e["data"]["complaint_id"]): instant(e) for e in branch if e["type"] == "complaint.filed"
    }
    resolved = {(e["customer_id"], e["data"]["complaint_id"]) for e in branch if e["type"] == "complaint.resolved"}
    long_open = [k for k, at in filed.items() if k not in resolved and at < LAST - dt.timedelta(days=30)]
    assert long_open, "some complaints stay unresolved for more than 30 days"
    completed = {(e["customer_id"], e["data"]["followup_id"]) for e in branch if e["type"] == "followup.completed"}
    overdue = [
        e for e in branch
        if e["type"] == "followup.scheduled" and dt.date.fromisoformat(e["data"]["due_date"]) < END
        and (e["customer_id"], e["data"]["followup_id"]) not in completed
    ]  # fmt: skip
    assert overdue


def test_corrections_void_an_earlier_duplicate_of_the_same_customer_once(branch):
    seen: dict[str, dict] = {}
    voided: set[str] = set()
    for e in branch:
        if e["type"] == "correction.recorded":
            target = seen[e["data"]["voids_event_id"]]
            assert target["customer_id"] == e["customer_id"]
            assert target["type"] in ("visit.recorded", "deposit.made")
            assert target["event_id"] not in voided
            voided.add(target["event_id"])
            twin = [
                o for o in seen.values()
                if o["customer_id"] == target["customer_id"] and o["event_id"] != target["event_id"]
                and o["occurred_at"] == target["occurred_at"] and o["data"] == target["data"]
            ]  # fmt: skip
            assert twin, "the voided event was a duplicate"
        seen[e["event_id"]] = e
    kinds = {seen[v]["type"] for v in voided}
    assert kinds == {"visit.recorded", "deposit.made"}


def test_forgotten_followups_are_closed_at_a_quarterly_ledger_review(branch):
    due = {
        (e["customer_id"], e["data"]["followup_id"]): dt.date.fromisoformat(e["data"]["due_date"])
        for e in branch
        if e["type"] == "followup.scheduled"
    }
    lapsed = [e for e in branch if e["type"] == "followup.completed" and e["data"]["outcome"] == LAPSED_OUTCOME]
    assert lapsed
    for e in lapsed:
        closed = instant(e).date()
        assert closed.day <= 7 and closed.month in (1, 4, 7, 10)
        assert closed - due[(e["customer_id"], e["data"]["followup_id"])] >= dt.timedelta(days=60)


def test_an_erased_customer_leaves_no_complaint_or_followup_open(branch):
    for customer, events in by_customer(branch).items():
        if events[-1]["type"] != "customer.erased":
            continue
        for opened, closed, key in (
            ("complaint.filed", "complaint.resolved", "complaint_id"),
            ("followup.scheduled", "followup.completed", "followup_id"),
        ):
            opens = {e["data"][key] for e in events if e["type"] == opened}
            assert opens == {e["data"][key] for e in events if e["type"] == closed}, customer


@pytest.mark.parametrize(
    ("now", "day"),
    [
        ("2026-12-01T09:59:59+00:00", "2026-11-30"),  # 17:59:59 in +08:00: today's business is still open
        ("2026-12-01T10:00:00+00:00", "2026-12-01"),
        ("2026-12-01T23:30:00+08:00", "2026-12-01"),
        ("2026-12-01T00:30:00+08:00", "2026-11-30"),
    ],
)
def test_the_default_history_ends_at_the_last_close_of_business_before_now(now, day):
    assert last_full_day(dt.datetime.fromisoformat(now)) == dt.date.fromisoformat(day)


def test_a_history_ending_on_the_last_full_day_holds_nothing_after_now():
    now = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
    assert max(instant(e) for e in generate_branch(40, 1, 2, last_full_day(now))) <= now


def test_erasure_is_last_and_only_at_zero_balances(branch):
    streams = by_customer(branch)
    erased = [c for c, events in streams.items() if any(e["type"] == "customer.erased" for e in events)]
    assert erased
    for customer in erased:
        events = streams[customer]
        assert events[-1]["type"] == "customer.erased"
        balance: dict[str, Decimal] = collections.defaultdict(Decimal)
        voided = {e["data"]["voids_event_id"] for e in events if e["type"] == "correction.recorded"}
        for e in events:
            if e["type"] in ("deposit.made", "withdrawal.made") and e["event_id"] not in voided:
                balance[e["data"]["account_id"]] += Decimal(e["data"]["amount"]) * (
                    1 if e["type"] == "deposit.made" else -1
                )
        assert set(balance.values()) <= {Decimal(0)}


def test_referrals_name_another_customer_who_registers_afterwards(branch):
    registered = {e["customer_id"]: instant(e) for e in branch if e["type"] == "customer.registered"}
    first_deposit: dict[str, Decimal] = {}
    referred = []
    for e in branch:
        if e["type"] == "referral.made":
            other = e["data"]["referred_customer_id"]
            assert other != e["customer_id"]
            assert instant(e) < registered[other]
            referred.append(other)
        if e["type"] == "deposit.made" and e["customer_id"] not in first_deposit:
            first_deposit[e["customer_id"]] = Decimal(e["data"]["amount"])
    assert referred and len(set(referred)) == len(referred)
    big = [r for r in referred if first_deposit.get(r, Decimal(0)) >= 10_000]
    assert len(big) >= 0.7 * len(referred)


def assert_redemptions_covered(events: list[dict], policy: Policy) -> None:
    """A conservative re-check of POLICY §4 points with only the earnings the engine knows at each redemption."""
    points = policy.points
    for customer, stream in by_customer(events).items():
        known: list[dict] = []
        last = None
        for e in stream:
            if e["type"] in ("greeting.sent", "survey.completed", "points.redeemed"):
                known.append(e)
            if e["type"] != "points.redeemed":
                continue
            assert last is None or instant(e) >= last, customer
            last = instant(e)
            buckets: dict[int, int] = collections.defaultdict(int)
            birthdays: set[str] = set()
            months: set[str] = set()
            order = {"greeting.sent": 0, "survey.completed": 0, "points.redeemed": 1}
            for k in sorted(known, key=lambda k: (instant(k), order[k["type"]])):
                local = instant(k).astimezone(policy.zone).isoformat()
                year = int(local[:4])
                if k["type"] == "greeting.sent" and k["data"]["occasion"] == "birthday":
                    if local[:4] not in birthdays:
                        birthdays.add(local[:4])
                        buckets[year] += points.birthday
                elif k["type"] == "survey.completed":
                    if local[:7] not in months:
                        months.add(local[:7])
                        buckets[year] += points.survey
                elif k["type"] == "points.redeemed":
                    left = k["data"]["points"]
                    for y in sorted(buckets):
                        if y + points.expiry_years > year:
                            take = min(left, buckets[y])
                            buckets[y] -= take
                            left -= take
                    assert left == 0, (customer, k)


def test_redemptions_are_covered_by_birthday_and_survey_points_known_when_recorded(branch):
    assert_redemptions_covered(branch, load_policy())
    assert any(e["type"] == "points.redeemed" for e in branch)


def test_redemptions_follow_the_points_of_the_policy():
    generous = policy_with(points={"birthday": 400, "survey": 50, "expiry_years": 1})
    events = list(generate_branch(200, 2, 1, END, generous))
    assert_redemptions_covered(events, generous)
    redeemed = sum(e["data"]["points"] for e in events if e["type"] == "points.redeemed")
    assert redeemed > sum(
        e["data"]["points"] for e in generate_branch(200, 2, 1, END) if e["type"] == "points.redeemed"
    )
    stingy = policy_with(points={"birthday": 0, "survey": 0})
    assert not [e for e in generate_branch(200, 2, 1, END, stingy) if e["type"] == "points.redeemed"]


def test_a_branch_under_a_changed_policy_is_ingested_without_rejections(sqlite_url):
    tiers = [{"name": t.name, "threshold": str(t.threshold * 3)} for t in load_policy().tier.tiers]
    changed = policy_with(
        tier={"tiers": tiers}, points={"birthday": 250, "expiry_years": 1}, referral={"min_first_deposit": "50000"}
    )
    engine = Engine(open_store(sqlite_url), KeyWrapper(bytes(range(32))), changed)
    try:
        events = list(generate_branch(60, 1, 4, END, changed))
        outcomes = list(engine.ingestor(batch_size=len(events)).ingest((None, e) for e in events))
    finally:
        engine.close()
    assert [o.to_json() for o in outcomes if o.status != "accepted"] == []
    assert any(e["type"] == "points.redeemed" for e in events)


def test_the_late_arrivals_are_marked_and_only_they_go_back_in_time():
    seen = list(arrivals(200, 2, 1, END))
    assert [a.event for a in seen] == list(generate_branch(200, 2, 1, END))
    kinds = {"visit.recorded", "greeting.sent", "survey.completed", "customer.profile_updated"}
    late = [a.event for a in seen if a.late]
    assert {e["type"] for e in late} == kinds
    assert 0.01 < len(late) / sum(a.event["type"] in kinds for a in seen) < 0.04  # about 2% of those kinds
    latest: dict[str, dt.datetime] = {}
    for a in seen:
        customer, at = a.event["customer_id"], instant(a.event)
        if not a.late:
            assert at >= latest.get(customer, at), a.event
            latest[customer] = max(latest.get(customer, at), at)


def test_a_generated_branch_is_ingested_without_rejections(engine, clock):
    out = io.StringIO()
    write_jsonl(generate_branch(50, 1, 3, END), out)
    items = [(n, loads(line)) for n, line in enumerate(out.getvalue().splitlines(), 1)]
    outcomes = list(engine.ingestor(clock=clock, batch_size=len(items)).ingest(items))
    assert [o.to_json() for o in outcomes if o.status != "accepted"] == []
    assert len(outcomes) == len(items)
    ring = engine.keyring()
    sent = by_customer([raw for _, raw in items])
    qualified = 0
    for customer, events in sent.items():
        stored = load_history(engine.store, ring, customer)
        extra = [e for e in stored if str(e.event_id) not in {s["event_id"] for s in events}]
        # The engine appends a referral.qualified of its own for each qualifying referral (POLICY §5).
        assert {e.type for e in extra} <= {"referral.qualified"}
        assert len(stored) == len(events) + len(extra)
        qualified += len(extra)
    assert qualified > 0


def test_the_cli_writes_the_same_events(tmp_path):
    from typer.testing import CliRunner

    from timeline.cli.main import app

    path = tmp_path / "branch.jsonl"
    args = ["generate", "--customers", "20", "--years", "1", "--seed", "5", "--end", "2025-12-31", "--out", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == list(generate_branch(20, 1, 5, END))
