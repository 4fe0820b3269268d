"""Applying a batch of the topic to a PostgreSQL view, exactly once, and re-evaluating customers as time passes.

The relay delivers at least once; this makes the *effect* exactly once:
every poll batch is one database transaction. The batch's events go into the
consumer's own copy (:mod:`.copies`: a repeat inserts nothing and changes
nothing), the state of every customer that got a new event is computed again
from that copy, as of now (as known now), the view rows are written
(:meth:`Projector.write`, the subclass's job), and the next offset of each
partition is saved (:mod:`.checkpoints`) — all or nothing.

Time alone changes state (a downgrade after 90 days, 180 days of silence):
each customer's ``recheck_at`` is the next such instant (or the instant an
event already received starts to count); :meth:`Projector.tick` re-evaluates
the customers whose instant has passed. The consumer ticks on a timer;
``timeline tick`` does it from outside.

Behind a backlog (a full poll), evaluating every batch would fold each
customer again and again, and hold every customer's history to do it
cheaply: a topic interleaves all customers. So a batch applied ``behind``
evaluates only the customers whose history the cache holds; the others'
events go into the copy and their streams rows are marked pending, in the
same transaction. :meth:`Projector.catch_up` evaluates pending customers
from the copy, a chunk per transaction, once the consumer is no longer
behind: each customer is folded once for the whole backlog, and memory
holds one chunk and the cache's bound, whatever the size of the history.
A batch touching more uncached customers than a chunk (a backlog's tail)
defers them too: folding all of them at once would outlast the poll interval.

Given the store's URL, a projector folds under its policy versions
(:mod:`.versions`); a publish marks every customer pending for the catch-up.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from kafka import TopicPartition

from timeline.consumers.cloudevents import NotACloudEvent, parse
from timeline.consumers.readmodels import checkpoints, copies, database
from timeline.consumers.readmodels.cache import CACHE_EVENTS, HistoryCache
from timeline.consumers.readmodels.dlq import DLQ_SUFFIX
from timeline.consumers.readmodels.evaluation import Clock, Evaluation, evaluate, utcnow
from timeline.consumers.readmodels.stats import BatchResult, ConsumerStats
from timeline.consumers.readmodels.versions import ViewVersions, versions_ddl
from timeline.domain.policy import Policy, load_policy
from timeline.domain.recorded import RecordedEvent
from timeline.projections.folding import fold

log = logging.getLogger(__name__)

CHUNK_CUSTOMERS = 100
"""Customers of one batch evaluated and written before the cache is trimmed again (their histories, about
12,000 events of a branch, are held on top of the cache's bound)."""
TICK_CHUNK = 2_000
"""Due customers a tick re-evaluates per transaction."""
CATCH_UP_CHUNK = 100
"""Pending customers :meth:`Projector.catch_up` evaluates per transaction (about 12,000 events of a branch)."""
CATCH_UP_SECONDS = 2.0
"""How long :meth:`Projector.catch_up` goes on between two polls (the group expects one every few seconds)."""


@dataclass
class Batch:
    """Kafka records sorted out: the events (first copy of each), the poison, and where each partition got to."""

    events: dict[str, tuple[RecordedEvent, bytes]] = field(default_factory=dict)
    poison: list[tuple[Any, str]] = field(default_factory=list)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    max_position: dict[TopicPartition, int] = field(default_factory=dict)
    messages: int = 0

    @classmethod
    def of(cls, records: list[Any]) -> Batch:
        batch = cls(messages=len(records))
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            batch.next_offsets[tp] = max(batch.next_offsets.get(tp, 0), r.offset + 1)
            try:
                if r.value is None:
                    raise NotACloudEvent("no value (a tombstone)")
                event = parse(r.value)
            except NotACloudEvent as exc:
                batch.poison.append((r, str(exc)))
                continue
            batch.events.setdefault(str(event.event_id), (event, r.value))
            batch.max_position[tp] = max(batch.max_position.get(tp, 0), event.position)
        return batch


class Projector:
    """Per-customer state → view rows in PostgreSQL, one transaction per batch. Subclasses write the view."""

    prefix: str = "projecting"
    default_group: str = "timeline-projecting"

    def __init__(
        self,
        db_url: str,
        topic: str,
        *,
        group: str | None = None,
        policy: Policy | None = None,
        clock: Clock = utcnow,
        store_url: str | None = None,
    ) -> None:
        """``store_url``: the event store whose published policy versions the view folds under (None: ``policy``
        alone, for all time)."""
        self.db_url = db_url
        self.topic = topic
        self.group = group or self.default_group
        self.policy = policy or load_policy()
        self.versions = ViewVersions(self.policy, store_url)
        self.clock = clock
        self.dead_letter_topic = topic + DLQ_SUFFIX
        self.cache = HistoryCache(CACHE_EVENTS)
        self.ranks = {level.name: i for i, level in enumerate(self.policy.tier.tiers)}
        self.stats = ConsumerStats()
        self.conn: psycopg.Connection | None = None
        self._generation: int | None = None
        self._gaps: set[str] = set()
        self.pending = True
        """Whether some customers may wait for :meth:`catch_up` (at start: a previous run may have left some)."""

    # -- subclass hooks ---------------------------------------------------------------------

    def ddl(self) -> list[str]:
        """The tables of this consumer's view (its bookkeeping tables are created anyway)."""
        return []

    def write(self, cur: psycopg.Cursor, evaluations: list[Evaluation], as_of: dt.datetime) -> None:
        """Write the view rows of these (re-)evaluated customers, inside the batch's transaction."""

    def finished(self, committed: bool) -> None:
        """Called after each transaction of a batch or a tick: committed, or rolled back."""

    # -- database ---------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = database.connect(self.db_url)
            self.conn.autocommit = True
            database.ensure(
                self.conn,
                [
                    *copies.copy_ddl(self.prefix),
                    *checkpoints.checkpoint_ddl(self.prefix),
                    *versions_ddl(self.prefix),
                    *self.ddl(),
                ],
            )
        return self.conn

    def disconnect(self) -> None:
        self.versions.close()
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def saved_offsets(self) -> dict[TopicPartition, int]:
        return checkpoints.saved_offsets(self.connect(), self.prefix, self.group, self.topic)

    def _lock_shared(self, conn: psycopg.Connection) -> None:
        """Keep a rebuild's swap out of this transaction; drop the cache if a rebuild swapped since the last one;
        bring the policy versions up to the store's (a publish marks every customer pending)."""
        generation = checkpoints.lock_shared(conn, self.prefix)
        if generation != self._generation:
            self.cache.clear()
            self._generation = generation
        with conn.cursor() as cur:
            if self.versions.sync(cur, self.prefix):
                self.pending = True

    # -- one batch --------------------------------------------------------------------------

    def apply(self, batch: Batch, polled_at: float = 0.0, behind: bool = False) -> BatchResult:
        """Apply the batch in one transaction (its poison must already be on the dead-letter topic).

        ``behind``: more is waiting on the topic; customers the cache does not hold are only marked pending.
        """
        conn = self.connect()
        as_of = self.clock()
        events, batch.events = batch.events, {}  # let go of the batch's values once they are in the copy
        try:
            with conn.transaction():
                self._lock_shared(conn)
                with conn.cursor() as cur:
                    fresh = self._insert_events(cur, events)
                    del events
                    touched: dict[str, list[RecordedEvent]] = {}
                    for event in fresh:
                        touched.setdefault(event.customer_id, []).append(event)
                    touched = self._defer_uncached(cur, touched, behind)
                    evaluated, fold_seconds = self._evaluate_touched(cur, touched, as_of)
                    checkpoints.save_offsets(cur, self.prefix, self.group, batch.next_offsets, batch.max_position)
                    checkpoints.record_dead_letters(cur, self.prefix, self.group, self.dead_letter_topic, batch.poison)
        except BaseException:
            self.cache.clear()  # it may hold events the rolled-back transaction did not keep
            self.finished(False)
            raise
        committed_at = time.time()
        self.finished(True)
        self.cache.trim()
        result = BatchResult(
            messages=batch.messages,
            applied=fresh,
            duplicates=batch.messages - len(batch.poison) - len(fresh),
            dead_letters=len(batch.poison),
            customers=evaluated,
            polled_at=polled_at or committed_at,
            committed_at=committed_at,
            as_of=as_of,
            fold_seconds=fold_seconds,
        )
        self.stats.add(result)
        return result

    def _insert_events(
        self, cur: psycopg.Cursor, events: dict[str, tuple[RecordedEvent, bytes]]
    ) -> list[RecordedEvent]:
        """Insert the batch's events into the copy; the ones not there before, in the batch's order."""
        items = list(events.values())
        inserted = copies.insert_events(cur, self.prefix, items)
        return [e for e, _ in items if str(e.event_id) in inserted]

    def _defer_uncached(
        self, cur: psycopg.Cursor, touched: dict[str, list[RecordedEvent]], behind: bool
    ) -> dict[str, list[RecordedEvent]]:
        """The touched customers to evaluate now: all of them, unless the batch is ``behind`` or more than
        ``CATCH_UP_CHUNK`` of them are not in the cache; then those are marked pending (for :meth:`catch_up`)."""
        deferred = [
            (c, max(e.version for e in new), max(e.position for e in new))
            for c, new in touched.items()
            if c not in self.cache
        ]
        if not deferred or (not behind and len(deferred) <= CATCH_UP_CHUNK):
            return touched
        copies.mark_pending(cur, self.prefix, deferred)
        self.pending = True
        return {c: new for c, new in touched.items() if c in self.cache}

    def _evaluate_touched(
        self, cur: psycopg.Cursor, touched: dict[str, list[RecordedEvent]], as_of: dt.datetime
    ) -> tuple[int, float]:
        """Evaluate and write the touched customers, ``CHUNK_CUSTOMERS`` at a time; (how many, seconds folding).

        All in the batch's transaction, but the cache is trimmed after each chunk: a catch-up batch that
        touches every customer holds at most the cache's bound of history, not the whole history.
        """
        customers = sorted(touched)
        evaluated, fold_seconds = 0, 0.0
        for start in range(0, len(customers), CHUNK_CUSTOMERS):
            chunk = customers[start : start + CHUNK_CUSTOMERS]
            self._load_histories(cur, {c: touched[c] for c in chunk})
            folding = time.perf_counter()
            evaluations = self._evaluate(chunk, as_of)
            fold_seconds += time.perf_counter() - folding
            self.write(cur, evaluations, as_of)
            copies.save_streams(cur, self.prefix, evaluations)
            evaluated += len(evaluations)
            self.cache.trim()
        return evaluated, fold_seconds

    def _load_histories(self, cur: psycopg.Cursor, touched: dict[str, list[RecordedEvent]]) -> None:
        """Bring every touched customer's whole history into the cache (new events included)."""
        missing = [c for c in touched if c not in self.cache]
        self.cache.hits += len(touched) - len(missing)
        self.cache.misses += len(missing)
        for c, new in touched.items():
            if c in self.cache:
                self.cache.extend(c, sorted(new, key=lambda e: e.version))
        if missing:
            for c, history in copies.read_histories(cur, self.prefix, missing).items():
                self.cache.put(c, history)

    def _evaluate(self, customer_ids: Sequence[str], as_of: dt.datetime) -> list[Evaluation]:
        versions = self.versions.timeline.known_at(as_of)
        out = []
        for c in customer_ids:
            history = self.cache.get(c) if c in self.cache else []
            if not history:
                continue
            if history[-1].version != len(history) and c not in self._gaps:
                self._gaps.add(c)  # at-least-once delivery in order per customer should make this impossible
                log.warning(
                    "%s consumer %s: customer %s has %d events up to version %d: some never arrived",
                    *(self.prefix, self.group, c, len(history), history[-1].version),
                )
            try:
                folded = self.cache.folds[c] = fold(history, versions, self.cache.folds.get(c))
                out.append(evaluate(c, history, versions, as_of, folded))
            except Exception as exc:  # noqa: BLE001 - one customer's bad history must not stop the others
                self.stats.errors += 1
                self.stats.last_error = f"{c}: {type(exc).__name__}: {exc}"
                log.exception(
                    "%s consumer %s: cannot evaluate customer %s; its row is left as it was",
                    *(self.prefix, self.group, c),
                )
        return out

    # -- time -------------------------------------------------------------------------------

    def tick(
        self,
        now: dt.datetime | None = None,
        max_chunks: int | None = None,
        pending: bool = True,
        chunk: int = TICK_CHUNK,
    ) -> int:
        """Re-evaluate every customer whose ``recheck_at`` has passed (``chunk`` per transaction); how many were.

        ``pending``: pending customers (``-infinity``) too; a consumer's own timer leaves them to :meth:`catch_up`,
        which takes them once it is no longer behind.
        """
        now = now or self.clock()
        condition = "recheck_at <= %s" if pending else f"recheck_at <= %s AND NOT {copies.PENDING}"
        done = 0
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            chunks += 1
            due = self._reevaluate_where(condition, (now,), now, chunk)
            done += due
            if due < chunk:
                break
        self.stats.ticks += 1
        self.stats.ticked += done
        if done:
            log.info("%s: re-evaluated %d customer(s) whose next change had come by %s", self.prefix, done, now)
        return done

    def catch_up(self, seconds: float = CATCH_UP_SECONDS) -> int:
        """Evaluate pending customers from the copy, ``CATCH_UP_CHUNK`` per transaction, for about ``seconds``;
        how many were. :attr:`pending` turns False once none is left."""
        started = time.monotonic()
        done = 0
        while self.pending:
            chunk = self._reevaluate_where(copies.PENDING, (), self.clock(), CATCH_UP_CHUNK)
            done += chunk
            if chunk < CATCH_UP_CHUNK:
                self.pending = False
            elif time.monotonic() - started >= seconds:
                break
        if done:
            log.info("%s consumer %s: evaluated %d customer(s) the backlog left pending", self.prefix, self.group, done)
        return done

    def _reevaluate_where(self, condition: str, params: tuple[Any, ...], now: dt.datetime, limit: int) -> int:
        """One transaction: re-evaluate up to ``limit`` customers whose streams row meets ``condition``; how many."""
        conn = self.connect()
        try:
            with conn.transaction():
                self._lock_shared(conn)
                with conn.cursor() as cur:
                    # Rows another transaction (the consumer) holds are its to re-evaluate.
                    due = [
                        row[0]
                        for row in cur.execute(
                            f"SELECT customer_id FROM {self.prefix}_streams WHERE {condition}"
                            " ORDER BY customer_id LIMIT %s FOR UPDATE SKIP LOCKED",
                            (*params, limit),
                        ).fetchall()
                    ]
                    for start in range(0, len(due), CHUNK_CUSTOMERS):
                        self._reevaluate(cur, due[start : start + CHUNK_CUSTOMERS], now)
        except BaseException:
            self.cache.clear()
            self.finished(False)
            raise
        if due:
            self.finished(True)
        self.cache.trim()
        return len(due)

    def _reevaluate(self, cur: psycopg.Cursor, customer_ids: list[str], now: dt.datetime) -> None:
        """Evaluate these customers again from the copy (the truth: another process may have added events)."""
        self.cache.discard(customer_ids)
        for c, history in copies.read_histories(cur, self.prefix, customer_ids).items():
            self.cache.put(c, history)
        evaluations = self._evaluate(customer_ids, now)
        self.write(cur, evaluations, now)
        copies.save_streams(cur, self.prefix, evaluations)
        stuck = [e.customer_id for e in evaluations if e.recheck_at is not None and e.recheck_at <= now]
        evaluated = {e.customer_id for e in evaluations}
        stuck += [c for c in customer_ids if c not in evaluated]  # its error is logged and counted
        if stuck:  # never loop on a customer whose instant does not move, or that cannot be evaluated
            cur.execute(
                f"UPDATE {self.prefix}_streams SET recheck_at = NULL WHERE customer_id = ANY(%s)",
                (stuck,),
            )
        self.cache.trim()
