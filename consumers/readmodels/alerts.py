"""``timeline consume alerts``: a subscriber a bank would write — alert when a customer turns at-risk or drops a tier.

Its own consumer group and its own copy of the events (``alerts_events``),
so it runs, lags and fails independently of the summary. For every customer
it re-evaluates (a new event, or an instant at which time alone changes the
state), it compares the new state with the last one it saw
(``alerts_watch``) and writes an alert row to ``alerts`` with the
explanation, and logs it as one JSON line (logger ``timeline.consumers.readmodels.alerts``):

- ``at_risk``: the lifecycle stage became ``at_risk`` (from any other stage,
  or on first sight). ``at`` is the evaluation instant; the explanation is the
  stage's rule, reason and the events it rests on.
- ``tier_drop``: each downgrade in the tier history after the last
  evaluation, at its own instant (``at``), with the rule, the reason (AUM
  below the threshold for the grace period) and the events that moved AUM.
  On first sight every downgrade so far counts. If the tier is lower than the
  one last seen but no such downgrade explains it (a back-dated correction),
  the latest downgrade is reported.

Alerts are unique per (customer, kind, at): applying a batch again after a
crash writes none twice, and the log line is written after the commit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import psycopg

from timeline.consumers.readmodels.evaluation import Evaluation
from timeline.consumers.readmodels.runner import ProjectingConsumer
from timeline.domain.recorded import iso

log = logging.getLogger(__name__)

PREFIX = "alerts"
DEFAULT_GROUP = "timeline-alerts"
AT_RISK = "at_risk"
TIER_DROP = "tier_drop"
KINDS = (AT_RISK, TIER_DROP)
EMITTED_KEPT = 1_000
ALERTS_DDL = [
    "CREATE TABLE IF NOT EXISTS alerts_watch ("
    " customer_id text PRIMARY KEY, tier text NOT NULL, lifecycle text NOT NULL, as_of timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS alerts ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id text NOT NULL,"
    " at timestamptz NOT NULL, kind text NOT NULL, from_value text, to_value text NOT NULL,"
    " explanation jsonb NOT NULL, event_ids text[] NOT NULL, branch_id text, relationship_manager text,"
    " detected_at timestamptz NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " UNIQUE (customer_id, kind, at))",
    "CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at)",
]


@dataclass(frozen=True)
class Alert:
    customer_id: str
    at: dt.datetime
    kind: str
    from_value: str | None
    to_value: str
    explanation: dict[str, Any]
    event_ids: list[str]
    branch_id: str | None
    relationship_manager: str | None
    detected_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.kind,
            "customer_id": self.customer_id,
            "at": iso(self.at),
            "from": self.from_value,
            "to": self.to_value,
            "branch_id": self.branch_id,
            "relationship_manager": self.relationship_manager,
            "explanation": self.explanation,
            "event_ids": self.event_ids,
            "detected_at": iso(self.detected_at),
        }


class AlertsConsumer(ProjectingConsumer):
    prefix = PREFIX
    default_group = DEFAULT_GROUP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[Alert] = []
        self.emitted: deque[Alert] = deque(maxlen=EMITTED_KEPT)
        """The last alerts this process wrote (bounded: a long run must not keep them all)."""

    def ddl(self) -> list[str]:
        return list(ALERTS_DDL)

    def write(self, cur: psycopg.Cursor, evaluations: list[Evaluation], as_of: dt.datetime) -> None:
        known = [e for e in evaluations if e.state is not None]
        if not known:
            return
        cur.execute(
            "SELECT customer_id, tier, lifecycle, as_of FROM alerts_watch WHERE customer_id = ANY(%s)",
            ([e.customer_id for e in known],),
        )
        before = {row[0]: row[1:] for row in cur.fetchall()}
        alerts: list[Alert] = []
        for e in known:
            alerts.extend(self.alerts_for(e, before.get(e.customer_id), as_of))
        cur.execute(
            "INSERT INTO alerts_watch (customer_id, tier, lifecycle, as_of)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])"
            " ON CONFLICT (customer_id) DO UPDATE SET tier = excluded.tier, lifecycle = excluded.lifecycle,"
            " as_of = excluded.as_of",
            (
                [e.customer_id for e in known],
                [e.state.tier.tier for e in known],  # type: ignore[union-attr]
                [e.state.lifecycle.stage for e in known],  # type: ignore[union-attr]
                [as_of] * len(known),
            ),
        )
        for a in alerts:
            cur.execute(
                "INSERT INTO alerts (customer_id, at, kind, from_value, to_value, explanation, event_ids,"
                " branch_id, relationship_manager, detected_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (customer_id, kind, at) DO NOTHING RETURNING id",
                (
                    a.customer_id,
                    a.at,
                    a.kind,
                    a.from_value,
                    a.to_value,
                    json.dumps(a.explanation, ensure_ascii=False),
                    a.event_ids,
                    a.branch_id,
                    a.relationship_manager,
                    a.detected_at,
                ),
            )
            if cur.fetchone() is not None:
                self._pending.append(a)

    def alerts_for(self, e: Evaluation, before: tuple[str, str, dt.datetime] | None, as_of: dt.datetime) -> list[Alert]:
        state = e.state
        assert state is not None
        who = state.assignment
        out: list[Alert] = []
        stage = state.lifecycle
        if stage.stage == AT_RISK and (before is None or before[1] != AT_RISK):
            out.append(
                Alert(
                    state.customer_id,
                    as_of,
                    AT_RISK,
                    before[1] if before else None,
                    AT_RISK,
                    {"rule": stage.rule, "reason": stage.reason, "aum": f"{state.aum:.2f}", "tier": state.tier.tier},
                    [str(i) for i in stage.event_ids],
                    who.branch_id,
                    who.relationship_manager,
                    as_of,
                )
            )
        since = before[2] if before else None
        drops = [c for c in state.tier.changes if self.ranks[c.to_tier] < self.ranks[c.from_tier]]
        fresh = [c for c in drops if since is None or c.at > since]
        if not fresh and before is not None and drops and self.ranks[state.tier.tier] < self.ranks[before[0]]:
            fresh = [drops[-1]]
        for c in fresh:
            out.append(
                Alert(
                    state.customer_id,
                    c.at,
                    TIER_DROP,
                    c.from_tier,
                    c.to_tier,
                    {"rule": c.rule, "reason": c.reason, "aum": f"{state.aum:.2f}", "tier_now": state.tier.tier},
                    [str(i) for i in c.event_ids],
                    who.branch_id,
                    who.relationship_manager,
                    as_of,
                )
            )
        return out

    def finished(self, committed: bool) -> None:
        if committed:  # log only what the database kept
            for a in self._pending:
                log.warning("ALERT %s", json.dumps(a.to_json(), ensure_ascii=False))
            self.emitted.extend(self._pending)
        self._pending = []


def list_alerts(
    conn: psycopg.Connection,
    since: dt.datetime | None = None,
    kind: str | None = None,
    customer: str | None = None,
) -> list[dict[str, Any]]:
    where, args = [], []
    if since is not None:
        where.append("at >= %s")
        args.append(since)
    if kind:
        where.append("kind = %s")
        args.append(kind)
    if customer:
        where.append("customer_id = %s")
        args.append(customer)
    sql = (
        "SELECT customer_id, at, kind, from_value, to_value, explanation, event_ids, branch_id,"
        " relationship_manager, detected_at FROM alerts"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY at, customer_id, kind"
    return [
        Alert(r[0], r[1], r[2], r[3], r[4], r[5], list(r[6]), r[7], r[8], r[9]).to_json()
        for r in conn.execute(sql, args).fetchall()
    ]
