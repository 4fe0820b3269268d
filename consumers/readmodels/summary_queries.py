"""The questions ``customer_summary`` answers: customers by tier, stage, branch and manager; tier moves; counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from timeline.consumers.readmodels.summary_tables import MOVES_TABLE, SUMMARY_COLUMNS, SUMMARY_TABLE
from timeline.domain.recorded import iso


@dataclass(frozen=True)
class SummaryRow:
    """A ``customer_summary`` row as the queries return it."""

    customer_id: str
    branch_id: str | None
    relationship_manager: str | None
    tier: str
    lifecycle: str
    points: int
    aum: Decimal
    last_activity_at: dt.datetime | None
    next_change_at: dt.datetime | None
    erased: bool
    tier_since: dt.datetime
    tier_rule: str
    tier_reason: str
    tier_event_ids: str
    lifecycle_rule: str
    lifecycle_reason: str
    lifecycle_event_ids: str
    policy: str
    as_of: dt.datetime
    known_at: dt.datetime
    last_version: int
    last_position: int

    def to_json(self) -> dict[str, Any]:
        """The fields of ``timeline state --json`` (``CustomerState.to_json``) that the row holds, same format."""
        return {
            "customer_id": self.customer_id,
            "tier": self.tier,
            "lifecycle": self.lifecycle,
            "points": self.points,
            "aum": f"{self.aum:.2f}",
            "branch_id": self.branch_id,
            "relationship_manager": self.relationship_manager,
            "last_activity_at": iso(self.last_activity_at) if self.last_activity_at else None,
            "erased": self.erased,
            "next_change_at": iso(self.next_change_at) if self.next_change_at else None,
            "as_of": iso(self.as_of),
        }

    def at_risk_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "branch_id": self.branch_id,
            "relationship_manager": self.relationship_manager,
            "tier": self.tier,
            "aum": f"{self.aum:.2f}",
            "rule": self.lifecycle_rule,
            "reason": self.lifecycle_reason,
            "event_ids": _split(self.lifecycle_event_ids),
            "last_activity_at": iso(self.last_activity_at) if self.last_activity_at else None,
            "as_of": iso(self.as_of),
        }


@dataclass(frozen=True)
class TierMove:
    customer_id: str
    at: dt.datetime
    from_tier: str
    to_tier: str
    direction: str
    rule: str
    reason: str
    event_ids: str
    branch_id: str | None
    relationship_manager: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "at": iso(self.at),
            "from": self.from_tier,
            "to": self.to_tier,
            "direction": self.direction,
            "rule": self.rule,
            "reason": self.reason,
            "event_ids": _split(self.event_ids),
            "branch_id": self.branch_id,
            "relationship_manager": self.relationship_manager,
        }


def _split(text: str) -> list[str]:
    return text.split(",") if text else []


def list_customers(
    conn: psycopg.Connection,
    tier: str | None = None,
    lifecycle: str | None = None,
    branch: str | None = None,
    rm: str | None = None,
    limit: int | None = None,
) -> list[SummaryRow]:
    """Customers by tier, lifecycle stage, branch and relationship manager (each optional), by customer id."""
    where, args = [], []
    for column, value in (
        ("tier", tier),
        ("lifecycle", lifecycle),
        ("branch_id", branch),
        ("relationship_manager", rm),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    sql = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM {SUMMARY_TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY customer_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [SummaryRow(*r) for r in conn.execute(sql, args).fetchall()]


def tier_moves(
    conn: psycopg.Connection,
    start: dt.datetime,
    end: dt.datetime,
    direction: str | None = None,
    branch: str | None = None,
) -> list[TierMove]:
    """Who moved tier with ``start ≤ at ≤ end``, in time order (``direction``: ``up``/``down``)."""
    sql = (
        f"SELECT m.customer_id, m.at, m.from_tier, m.to_tier, m.direction, m.rule, m.reason, m.event_ids,"
        f" s.branch_id, s.relationship_manager FROM {MOVES_TABLE} m"
        f" LEFT JOIN {SUMMARY_TABLE} s USING (customer_id) WHERE m.at >= %s AND m.at <= %s"
    )
    args: list[Any] = [start, end]
    if direction:
        sql += " AND m.direction = %s"
        args.append(direction)
    if branch:
        sql += " AND s.branch_id = %s"
        args.append(branch)
    sql += " ORDER BY m.at, m.customer_id"
    return [TierMove(*r) for r in conn.execute(sql, args).fetchall()]


def at_risk(conn: psycopg.Connection, branch: str | None = None, rm: str | None = None) -> list[SummaryRow]:
    return list_customers(conn, lifecycle="at_risk", branch=branch, rm=rm)


def counts(conn: psycopg.Connection, now: dt.datetime) -> dict[str, Any]:
    """Rows, rows per tier and stage, and rows whose ``next_change_at`` has passed (waiting for a tick)."""
    total, stale, as_of = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE next_change_at <= %s), min(as_of) FROM {SUMMARY_TABLE}", (now,)
    ).fetchone()
    tiers = dict(conn.execute(f"SELECT tier, count(*) FROM {SUMMARY_TABLE} GROUP BY tier ORDER BY 1").fetchall())
    stages = dict(
        conn.execute(f"SELECT lifecycle, count(*) FROM {SUMMARY_TABLE} GROUP BY lifecycle ORDER BY 1").fetchall()
    )
    return {
        "customers": total,
        "stale": stale,
        "oldest_as_of": iso(as_of) if as_of else None,
        "tiers": tiers,
        "lifecycles": stages,
    }


STAGES = ("prospect", "churned", "at_risk", "loyal", "established", "new")
"""The lifecycle stages (:mod:`timeline.projections.lifecycle`), in the order of their rules."""
