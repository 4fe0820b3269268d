"""The ``customer_summary`` view's tables and how its rows are written.

``customer_summary`` holds one row per registered customer, as of ``as_of``;
``summary_tier_moves`` every tier change up to then. ``suffix`` names a
rebuild's new tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from timeline.projections.state import CustomerState

SUMMARY_TABLE = "customer_summary"
MOVES_TABLE = "summary_tier_moves"

SUMMARY_COLUMNS = (
    "customer_id",
    "branch_id",
    "relationship_manager",
    "tier",
    "lifecycle",
    "points",
    "aum",
    "last_activity_at",
    "next_change_at",
    "erased",
    "tier_since",
    "tier_rule",
    "tier_reason",
    "tier_event_ids",
    "lifecycle_rule",
    "lifecycle_reason",
    "lifecycle_event_ids",
    "policy",
    "as_of",
    "known_at",
    "last_version",
    "last_position",
)
SUMMARY_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "bigint",
    "numeric",
    "timestamptz",
    "timestamptz",
    "boolean",
    "timestamptz",
    "text",
    "text",
    "text",  # event id lists travel as comma-joined text (arrays of arrays do not unnest)
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "bigint",
    "bigint",
)
MOVE_COLUMNS = ("customer_id", "at", "from_tier", "to_tier", "direction", "rule", "reason", "event_ids")
MOVE_TYPES = ("text", "timestamptz", "text", "text", "text", "text", "text", "text")


def summary_ddl(suffix: str = "") -> list[str]:
    t, m = SUMMARY_TABLE + suffix, MOVES_TABLE + suffix
    return [
        f"CREATE TABLE IF NOT EXISTS {t} ("
        " customer_id text PRIMARY KEY, branch_id text, relationship_manager text,"
        " tier text NOT NULL, lifecycle text NOT NULL, points bigint NOT NULL, aum numeric(20, 2) NOT NULL,"
        " last_activity_at timestamptz, next_change_at timestamptz, erased boolean NOT NULL,"
        " tier_since timestamptz NOT NULL, tier_rule text NOT NULL, tier_reason text NOT NULL,"
        " tier_event_ids text NOT NULL, lifecycle_rule text NOT NULL, lifecycle_reason text NOT NULL,"
        " lifecycle_event_ids text NOT NULL, policy text NOT NULL, as_of timestamptz NOT NULL,"
        " known_at timestamptz NOT NULL, last_version bigint NOT NULL, last_position bigint NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        f"CREATE INDEX IF NOT EXISTS {t}_tier ON {t} (tier)",
        f"CREATE INDEX IF NOT EXISTS {t}_lifecycle ON {t} (lifecycle)",
        f"CREATE INDEX IF NOT EXISTS {t}_branch ON {t} (branch_id, relationship_manager)",
        f"CREATE INDEX IF NOT EXISTS {t}_next_change ON {t} (next_change_at)",
        f"CREATE TABLE IF NOT EXISTS {m} ("
        " customer_id text NOT NULL, at timestamptz NOT NULL, from_tier text NOT NULL, to_tier text NOT NULL,"
        " direction text NOT NULL, rule text NOT NULL, reason text NOT NULL, event_ids text NOT NULL,"
        " PRIMARY KEY (customer_id, at))",
        f"CREATE INDEX IF NOT EXISTS {m}_at ON {m} (at)",
    ]


def _ids(ids: Iterable[Any]) -> str:
    return ",".join(str(i) for i in ids)


def summary_row(state: CustomerState, last_version: int, last_position: int) -> tuple[Any, ...]:
    """One ``customer_summary`` row (in :data:`SUMMARY_COLUMNS` order)."""
    tier, stage, who = state.tier, state.lifecycle, state.assignment
    return (
        state.customer_id,
        who.branch_id,
        who.relationship_manager,
        tier.tier,
        stage.stage,
        state.points.available,
        state.aum,
        state.last_activity_at,
        state.next_change_at,
        state.erased,
        tier.since,
        tier.rule,
        tier.reason,
        _ids(tier.event_ids),
        stage.rule,
        stage.reason,
        _ids(stage.event_ids),
        state.policy,
        state.as_of,
        state.known_at,
        last_version,
        last_position,
    )


def move_rows(state: CustomerState, ranks: dict[str, int]) -> list[tuple[Any, ...]]:
    return [
        (
            state.customer_id,
            c.at,
            c.from_tier,
            c.to_tier,
            "up" if ranks[c.to_tier] > ranks[c.from_tier] else "down",
            c.rule,
            c.reason,
            _ids(c.event_ids),
        )
        for c in state.tier.changes
    ]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[r[i] for r in rows] for i in range(width)] if rows else [[] for _ in range(width)]


def upsert_summary(cur: psycopg.Cursor, rows: Sequence[tuple[Any, ...]], suffix: str = "") -> None:
    if not rows:
        return
    cols = ", ".join(SUMMARY_COLUMNS)
    arrays = ", ".join(f"%s::{t}[]" for t in SUMMARY_TYPES)
    updates = ", ".join(f"{c} = excluded.{c}" for c in SUMMARY_COLUMNS[1:])
    cur.execute(
        f"INSERT INTO {SUMMARY_TABLE}{suffix} ({cols}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (customer_id) DO UPDATE SET {updates}, updated_at = clock_timestamp()",
        _columns(rows, len(SUMMARY_COLUMNS)),
    )


def delete_summary(cur: psycopg.Cursor, customer_ids: Sequence[str], suffix: str = "") -> None:
    """Rows of customers that have no state any more (e.g. a voided registration)."""
    if customer_ids:
        cur.execute(f"DELETE FROM {SUMMARY_TABLE}{suffix} WHERE customer_id = ANY(%s)", (list(customer_ids),))


def replace_moves(
    cur: psycopg.Cursor, customer_ids: Sequence[str], rows: Sequence[tuple[Any, ...]], suffix: str = ""
) -> None:
    """The tier moves of these customers become exactly ``rows``."""
    if customer_ids:
        cur.execute(f"DELETE FROM {MOVES_TABLE}{suffix} WHERE customer_id = ANY(%s)", (list(customer_ids),))
    if rows:
        arrays = ", ".join(f"%s::{t}[]" for t in MOVE_TYPES)
        cur.execute(
            f"INSERT INTO {MOVES_TABLE}{suffix} ({', '.join(MOVE_COLUMNS)}) SELECT * FROM unnest({arrays})",
            _columns(rows, len(MOVE_COLUMNS)),
        )
