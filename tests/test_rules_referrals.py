"""POLICY §5 "Referral qualification", read as a specification: one scenario per rule, at its boundaries.

A's ``referral.made`` naming R qualifies when it is the first counted referral
naming R in business order, it is dated at or before R's registration, R's
deposits at the instant of R's first deposit total at least 10,000, and A is
not erased. The engine then appends one ``referral.qualified`` to A's stream,
dated at R's first deposit, with an id derived from R; the decision is taken
once, when it first holds, and is never withdrawn.

The rule scenarios run on the in-memory store (the ``branch`` fixture).
The concurrency section races two real processes on PostgreSQL, including
the store and ingest failures that race once met (stale caches, prepared
statements, schema DDL on open).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import traceback
from concurrent.futures import ThreadPoolExecutor
from threading import BrokenBarrierError
from typing import Any

import psycopg

from tests.conftest import KEK
from tests.factories import correction, deposit, erased, event, registered, visit
from tests.support.instants import utc
from tests.support.waiting import wait_for
from timeline.application.keyring import KeyRing, load_history
from timeline.crypto import KeyWrapper
from timeline.engine import Engine
from timeline.projections.referrals import qualification_id
from timeline.store import open_store

A_REGISTERED = "2025-01-01T09:00:00+08:00"
REFERRED = "2025-02-01T09:00:00+08:00"
"""When A refers R: the same instant as R's registration (the latest a referral may be dated)."""
R_REGISTERED = "2025-02-01T09:00:00+08:00"
FIRST_DEPOSIT = "2025-03-01T10:00:00+08:00"


def referral(referrer: str, referred: str, at: str = REFERRED) -> dict[str, Any]:
    return event("referral.made", referrer, at, {"referred_customer_id": referred})


def qualifications(store, customer_id: str) -> list:
    """The ``referral.qualified`` events stored in one customer's stream."""
    history = load_history(store, KeyRing(store, None), customer_id)
    return [e for e in history if e.type == "referral.qualified"]


def qualified(branch, customer_id: str) -> list:
    return qualifications(branch.engine.store, customer_id)


def assert_qualified(branch, referrer: str, referred: str, made: dict[str, Any], at: str) -> None:
    """Exactly one qualification, in the referrer's stream, as §5 describes it."""
    [q] = qualified(branch, referrer)
    assert q.event_id == qualification_id(referred)
    assert q.customer_id == referrer
    assert q.occurred_at == utc(at)
    assert q.data == {"referred_customer_id": referred, "referral_event_id": made["event_id"]}


def people(branch, *referrers: str) -> None:
    """Register the referrers."""
    branch.accept(*(registered(c, at=A_REGISTERED) for c in referrers))


def test_a_referral_qualifies_when_the_first_deposit_reaches_10000_and_a_earns_500(branch):
    made = referral("A", "R", at=R_REGISTERED)  # at R's registration instant: "at or before" includes it
    branch.accept(registered("A", at=A_REGISTERED), made, registered("R", at=R_REGISTERED))
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))  # exactly the minimum

    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)
    assert branch.stored_types("A") == ["customer.registered", "referral.made", "referral.qualified"]
    assert "referral.qualified" not in branch.stored_types("R")
    assert branch.state("A", as_of="2025-03-01T09:59:59+08:00").points.available == 0
    state = branch.state("A", as_of=FIRST_DEPOSIT)
    assert (state.points.available, state.qualified_referrals) == (500, 1)


def test_whichever_arrives_last_the_referral_or_the_first_deposit_qualifies(branch):
    people(branch, "A1", "A2")
    branch.accept(registered("R1", at=R_REGISTERED), registered("R2", at=R_REGISTERED))
    made_1, made_2 = referral("A1", "R1"), referral("A2", "R2")
    # R1's deposit first and A1's referral in a later ingest; A2's referral first and R2's deposit later.
    branch.recording_at("2025-03-01T10:00:00+08:00").accept(deposit("R1", at=FIRST_DEPOSIT, amount="20000.00"))
    branch.recording_at("2025-03-05T10:00:00+08:00").accept(made_1)
    branch.recording_at("2025-03-01T10:00:00+08:00").accept(made_2)
    branch.recording_at("2025-03-05T10:00:00+08:00").accept(deposit("R2", at=FIRST_DEPOSIT, amount="20000.00"))

    assert_qualified(branch, "A1", "R1", made_1, FIRST_DEPOSIT)  # dated at the deposit, not at its arrival
    assert_qualified(branch, "A2", "R2", made_2, FIRST_DEPOSIT)
    [q] = qualified(branch, "A1")
    assert q.recorded_at == utc("2025-03-05T10:00:00+08:00")


def test_a_referral_dated_after_the_registration_does_not_qualify(branch):
    people(branch, "A")
    branch.accept(
        registered("R", at=R_REGISTERED),
        referral("A", "R", at="2025-02-01T09:00:01+08:00"),  # one second after R registered
        deposit("R", at=FIRST_DEPOSIT, amount="50000.00"),
    )

    assert qualified(branch, "A") == []
    assert branch.state("A", as_of="2025-12-31T00:00:00+08:00").points.available == 0


def test_a_first_deposit_below_10000_never_qualifies_even_if_later_deposits_are_large(branch):
    people(branch, "A")
    branch.accept(referral("A", "R"), registered("R", at=R_REGISTERED))
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="9999.99"))
    branch.accept(deposit("R", at="2025-03-01T10:00:01+08:00", amount="1000000.00"))
    branch.accept(deposit("R", at="2025-03-02T10:00:00+08:00", amount="1000000.00", account_id="A2"))

    assert qualified(branch, "A") == []


def test_deposits_at_the_instant_of_the_first_deposit_are_totalled(branch):
    people(branch, "A")
    made = referral("A", "R")
    branch.accept(made, registered("R", at=R_REGISTERED))
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="6000.00", account_id="A1"))
    assert qualified(branch, "A") == []  # not yet: 6,000 so far; nothing is decided while it does not hold

    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="4000.00", account_id="A2", product="time", term_months=3))

    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)


def test_a_late_deposit_that_becomes_the_first_deposit_is_the_one_that_counts(branch):
    people(branch, "A")
    made = referral("A", "R")
    branch.accept(made, registered("R", at=R_REGISTERED), deposit("R", at=FIRST_DEPOSIT, amount="5000.00"))
    assert qualified(branch, "A") == []

    earlier = "2025-02-20T10:00:00+08:00"
    branch.accept(deposit("R", at=earlier, amount="10000.00", account_id="A2"))

    assert_qualified(branch, "A", "R", made, earlier)


def test_voiding_a_small_first_deposit_makes_the_next_deposit_the_first(branch):
    people(branch, "A")
    made = referral("A", "R")
    small = deposit("R", at=FIRST_DEPOSIT, amount="100.00", account_id="A1")
    second = "2025-03-02T10:00:00+08:00"
    branch.accept(made, registered("R", at=R_REGISTERED), small, deposit("R", at=second, amount="10000.00"))
    assert qualified(branch, "A") == []

    branch.accept(correction(small["event_id"], customer_id="R", at="2025-03-03T10:00:00+08:00"))

    assert_qualified(branch, "A", "R", made, second)


def test_only_the_first_counted_referral_in_business_order_can_qualify(branch):
    people(branch, "A", "B")
    by_b = referral("B", "R", at="2025-01-20T09:00:00+08:00")
    by_a = referral("A", "R", at="2025-01-10T09:00:00+08:00")
    branch.accept(by_b)  # stored first, but dated later
    branch.accept(by_a)
    branch.accept(registered("R", at=R_REGISTERED), deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))
    branch.accept(deposit("R", at="2025-04-01T10:00:00+08:00", amount="10000.00"))

    assert_qualified(branch, "A", "R", by_a, FIRST_DEPOSIT)
    assert qualified(branch, "B") == []
    assert branch.state("B").points.available == 0


def test_a_qualification_is_final_even_when_an_earlier_referral_arrives_later(branch):
    """§3's one exception: arriving in business order would have made A's referral the qualifying one."""
    people(branch, "A", "B")
    by_b = referral("B", "R", at="2025-01-20T09:00:00+08:00")
    branch.accept(by_b, registered("R", at=R_REGISTERED), deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))
    assert_qualified(branch, "B", "R", by_b, FIRST_DEPOSIT)

    branch.accept(referral("A", "R", at="2025-01-10T09:00:00+08:00"))
    branch.accept(deposit("R", at="2025-02-15T10:00:00+08:00", amount="50.00", account_id="A9"))  # R's new first

    assert_qualified(branch, "B", "R", by_b, FIRST_DEPOSIT)
    assert qualified(branch, "A") == []


def test_an_erased_referrer_does_not_qualify(branch):
    people(branch, "A", "B")
    branch.accept(referral("A", "R", at="2025-01-10T09:00:00+08:00"), erased("A", at="2025-01-15T09:00:00+08:00"))
    branch.accept(referral("B", "R", at="2025-01-20T09:00:00+08:00"), registered("R", at=R_REGISTERED))
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))

    # A's referral is still the first counted one, and A is erased: nobody qualifies.
    assert qualified(branch, "A") == []
    assert qualified(branch, "B") == []


def test_voiding_the_first_referral_lets_the_next_one_qualify_when_rechecked(branch):
    people(branch, "A", "B")
    by_a = referral("A", "R", at="2025-01-10T09:00:00+08:00")
    by_b = referral("B", "R", at="2025-01-20T09:00:00+08:00")
    branch.accept(by_a, erased("A", at="2025-01-15T09:00:00+08:00"), by_b, registered("R", at=R_REGISTERED))
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))
    assert qualified(branch, "B") == []

    # A correction is accepted for an erased customer (§2) and is itself a trigger (§5).
    branch.accept(correction(by_a["event_id"], customer_id="A", at="2025-03-05T09:00:00+08:00"))

    assert_qualified(branch, "B", "R", by_b, FIRST_DEPOSIT)
    assert qualified(branch, "A") == []


def test_an_existing_qualification_is_never_withdrawn_even_if_its_referral_is_voided(branch):
    people(branch, "A", "B")
    by_a = referral("A", "R", at="2025-01-10T09:00:00+08:00")
    first = deposit("R", at=FIRST_DEPOSIT, amount="10000.00")
    branch.accept(by_a, referral("B", "R", at="2025-01-20T09:00:00+08:00"), registered("R", at=R_REGISTERED))
    branch.accept(first)
    [q] = qualified(branch, "A")

    branch.accept(correction(by_a["event_id"], customer_id="A", at="2025-04-01T09:00:00+08:00"))
    branch.accept(deposit("R", at="2025-04-02T10:00:00+08:00", amount="30000.00"))
    branch.accept(correction(first["event_id"], customer_id="R", at="2025-04-03T09:00:00+08:00"))

    assert_qualified(branch, "A", "R", by_a, FIRST_DEPOSIT)
    assert qualified(branch, "B") == []  # only one referral per referred customer can ever qualify
    state = branch.state("A", as_of="2025-12-31T00:00:00+08:00")
    assert (state.qualified_referrals, state.points.available) == (1, 500)
    reason = branch.reject(correction(str(q.event_id), customer_id="A", at="2025-04-04T09:00:00+08:00"))
    assert "referral.qualified" in reason and "cannot be voided" in reason


def test_resending_the_same_events_does_not_append_a_second_qualification(branch):
    people(branch, "A")
    made = referral("A", "R")
    events = [made, registered("R", at=R_REGISTERED), deposit("R", at=FIRST_DEPOSIT, amount="10000.00")]
    branch.accept(*events)

    again = branch.send(*events) + branch.send(*reversed(events), batch_size=1)

    assert {o.status for o in again} == {"duplicate"}
    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)
    assert branch.stored_types("A").count("referral.qualified") == 1


def test_a_line_reusing_the_id_of_a_qualification_written_in_the_same_run_is_reported(branch):
    """Outcomes with an input line are the sender's, even when their id is one the engine wrote in that run."""
    people(branch, "A")
    made = referral("A", "R")
    forged = event(
        "referral.qualified",
        "A",
        FIRST_DEPOSIT,
        {"referred_customer_id": "R", "referral_event_id": made["event_id"]},
        event_id=str(qualification_id("R")),
    )
    visits = [visit("A", at=f"2025-04-0{day}T09:00:00+08:00") for day in (1, 2, 3)]
    first_deposit = deposit("R", at=FIRST_DEPOSIT, amount="10000.00")
    events = [made, registered("R", at=R_REGISTERED), first_deposit, *visits, forged]

    outcomes = branch.send(*events, batch_size=3)  # the qualification is checked in the forged line's batch

    assert [(o.line, o.status) for o in outcomes] == [(n, "accepted") for n in range(1, 7)] + [(7, "rejected")]
    assert outcomes[6].error == "referral.qualified is written by the engine only"
    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)


def test_referral_qualified_sent_from_outside_is_rejected(branch):
    people(branch, "A")
    made = referral("A", "R")
    branch.accept(made, registered("R", at=R_REGISTERED))
    forged = event(
        "referral.qualified",
        "A",
        FIRST_DEPOSIT,
        {"referred_customer_id": "R", "referral_event_id": made["event_id"]},
        event_id=str(qualification_id("R")),  # even with the very id the engine would use
    )

    assert "written by the engine only" in branch.reject(forged)
    assert "cannot refer themself" in branch.reject(referral("A", "A"))
    assert branch.stored_types("A") == ["customer.registered", "referral.made"]
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))  # the engine still writes its own
    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)


# --- Concurrency (PostgreSQL, real processes) ---------------------------------------------------------------------

PAIRS = 10


def _clock() -> dt.datetime:
    return dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


KNOWN_CRASH = "IndexError"
"""The ingest bug of ``test_a_writer_whose_qualification_was_just_stored_by_another_reports_it_as_stored``."""


def _ingest_one_per_barrier(url: str, events: list[dict[str, Any]], barrier: Any, opening: Any, results: Any) -> None:
    """One writer process: for each event, a new ingest of its own, started together with the other writer's.

    Each ingest opens its own store, one writer at a time and before either appends (store bug: opening
    runs DDL that can deadlock with another opening or an append, see
    ``test_opening_a_store_while_another_process_appends_does_not_deadlock``), and a store is not reused
    across ingests (store bug: see
    ``test_two_long_running_writers_survive_losing_races_to_each_other``). An ingest that
    crashes is sent again, as a sender would; each event's report is its crashes and its final outcome.
    """
    try:
        reports = []
        for raw in events:
            barrier.wait(timeout=60)
            crashes: list[str] = []
            for attempt in range(3):
                with opening:
                    store = open_store(url)
                try:
                    ingestor = Engine(store, KeyWrapper(KEK)).ingestor(clock=_clock)
                    if attempt == 0:
                        barrier.wait(timeout=60)
                    [outcome] = ingestor.ingest([(1, raw)])
                    engine_events = [(o.status, o.error) for o in ingestor.engine_events]
                    reports.append((crashes, outcome.status, outcome.error, engine_events))
                    break
                except BrokenBarrierError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
                    crashes.append(f"{type(exc).__name__}: {exc}")
                finally:
                    store.close()
            else:
                reports.append((crashes, "crashed", None, []))
        results.put((os.getpid(), reports, None))
    except BaseException:  # report it, so the test fails instead of hanging on the queue
        barrier.abort()
        results.put((os.getpid(), [], traceback.format_exc()))


def test_referral_and_first_deposit_ingested_at_once_by_two_processes_qualify_exactly_once(pg_url):
    setup = open_store(pg_url)
    try:
        engine = Engine(setup, KeyWrapper(KEK))
        outcomes = engine.ingestor(clock=_clock).ingest(
            list(
                enumerate(
                    [registered(f"A{n}", at=A_REGISTERED) for n in range(PAIRS)]
                    + [registered(f"R{n}", at=R_REGISTERED) for n in range(PAIRS)]
                )
            )
        )
        assert {o.status for o in outcomes} == {"accepted"}
        referrals = [referral(f"A{n}", f"R{n}") for n in range(PAIRS)]
        deposits = [deposit(f"R{n}", at=FIRST_DEPOSIT, amount="10000.00") for n in range(PAIRS)]

        ctx = multiprocessing.get_context("spawn")
        barrier, opening, results = ctx.Barrier(2), ctx.Lock(), ctx.Queue()
        writers = [
            ctx.Process(target=_ingest_one_per_barrier, args=(pg_url, inputs, barrier, opening, results))
            for inputs in (referrals, deposits)
        ]
        for w in writers:
            w.start()
        reports = [results.get(timeout=120) for _ in writers]
        for w in writers:
            w.join(timeout=60)
        errors = [error for _, _, error in reports if error]
        assert not errors, "\n".join(errors)

        for _, events, _ in reports:
            assert len(events) == PAIRS
            for crashes, status, error, engine_events in events:
                assert all(crash.startswith(KNOWN_CRASH) for crash in crashes), crashes
                # Accepted; or, after the known crash (which struck after the commit), a duplicate when re-sent.
                assert (status, error) == ("duplicate" if crashes else "accepted", None)
                assert {status for status, _ in engine_events} <= {"accepted", "duplicate"}, engine_events
        # In each pair, one writer appended the qualification; the other did not try or found it stored.
        appended = [sum(("accepted", None) in writer[n][3] for _, writer, _ in reports) for n in range(PAIRS)]
        assert appended == [1] * PAIRS
        for n in range(PAIRS):
            [q] = qualifications(setup, f"A{n}")
            assert q.event_id == qualification_id(f"R{n}")
            assert q.occurred_at == utc(FIRST_DEPOSIT)
            assert q.data["referral_event_id"] == referrals[n]["event_id"]
            assert [e.type for e in load_history(setup, KeyRing(setup, None), f"R{n}")] == [
                "customer.registered",
                "deposit.made",
            ]
    finally:
        setup.close()


def test_two_long_running_writers_survive_losing_races_to_each_other(pg_url):
    """Two long-lived ingestors writing to one customer by turns: each one's view of the stream is stale at its
    next write, so each write loses the race once, re-reads and is retried (as a qualification appended by the
    other writer does in the two-process test). The crash comes after a few such losses on one pooled
    connection, at a varying count, so the test goes on until it comes (or up to a count it never reached).
    """
    stores = [open_store(pg_url), open_store(pg_url)]
    try:
        first, second = (Engine(s, KeyWrapper(KEK)).ingestor(clock=_clock) for s in stores)
        assert [o.status for o in first.ingest([(1, registered("C1", at=A_REGISTERED))])] == ["accepted"]
        start = utc("2025-02-01T09:00:00+08:00")
        for n in range(300):
            moment = (start + dt.timedelta(minutes=n)).isoformat()
            for writer in (first, second):
                assert [o.status for o in writer.ingest([(1, visit("C1", at=moment))])] == ["accepted"]
    finally:
        for s in stores:
            s.close()


def test_opening_a_store_while_another_process_appends_does_not_deadlock(pg_url):
    open_store(pg_url).close()
    with psycopg.connect(pg_url) as appender, ThreadPoolExecutor(max_workers=1) as opener:
        # An append, caught between its two steps: index rows written, the events table not yet locked.
        appender.execute(
            "INSERT INTO timeline_event_index VALUES ('00000000-0000-0000-0000-000000000001', 'X', 1, 'h')"
        )
        opening = opener.submit(open_store, pg_url)
        with psycopg.connect(pg_url, autocommit=True) as watcher:
            wait_for(  # opened already (no DDL on an existing schema), or stuck behind the appender's lock
                lambda: (
                    opening.done()
                    or watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    ).fetchone()[0]
                ),
                timeout=10,
                what="the store to open or to wait for the appender's lock",
            )
        try:
            appender.execute("LOCK TABLE timeline_events IN EXCLUSIVE MODE")  # the append's second step
        finally:
            appender.rollback()
            opening.result(timeout=30).close()


def test_a_writer_whose_view_of_the_referred_customer_is_stale_decides_again_at_commit(branch):
    """Writer 1 holds R as it was before writer 2 stored R's qualifying deposit; writer 1's referral then
    decides on that stale view (no deposit: no qualification), and the commit's read set sends it back to
    decide on the stored truth, where the referral qualifies."""
    engine = branch.engine
    writer_1 = engine.ingestor(clock=lambda: branch.now)
    assert [o.status for o in writer_1.ingest([(1, registered("A", at=A_REGISTERED)), (2, registered("R"))])] == [
        "accepted",
        "accepted",
    ]
    branch.accept(deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))  # writer 2
    made = referral("A", "R", at="2025-01-01T09:00:00+08:00")
    [outcome] = writer_1.ingest([(1, made)])

    assert outcome.status == "accepted"
    assert [o.status for o in writer_1.engine_events] == ["accepted"]
    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)


def test_a_writer_that_missed_another_writers_referral_and_qualification_does_not_qualify_a_second(branch):
    """Writer 1 knows no referral naming R; writer 2 stores A's referral, which qualifies. Writer 1's
    later referral by B is decided against its stale count of referrals naming R (none), which the read
    set catches: decided again, R is found qualified already, and nothing more is appended."""
    engine = branch.engine
    writer_1 = engine.ingestor(clock=lambda: branch.now)
    first = [registered("A", at=A_REGISTERED), registered("B", at=A_REGISTERED), registered("R", at=R_REGISTERED)]
    list(writer_1.ingest(list(enumerate(first, 1))))
    list(writer_1.ingest([(1, deposit("R", at=FIRST_DEPOSIT, amount="10000.00"))]))
    made = referral("A", "R")
    branch.accept(made)  # writer 2: A's referral qualifies at once
    [outcome] = writer_1.ingest([(1, referral("B", "R"))])

    assert outcome.status == "accepted"
    assert [o.status for o in writer_1.engine_events if o.event_id == qualification_id("R")] == []
    assert_qualified(branch, "A", "R", made, FIRST_DEPOSIT)
    assert qualifications(engine.store, "B") == []
