"""``timeline consume summary``: the ``customer_summary`` read model.

:class:`SummaryConsumer` keeps one row per registered customer (branch,
relationship manager, tier, lifecycle stage with its rule and reason, points,
AUM, last activity, the next instant at which time alone changes the state)
and every tier change in ``summary_tier_moves``, exactly once per message (see
:mod:`timeline.consumers.readmodels.runner`). :mod:`.rebuild` computes it all again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg

from timeline.consumers.readmodels import summary_tables
from timeline.consumers.readmodels.evaluation import Evaluation
from timeline.consumers.readmodels.runner import ProjectingConsumer

PREFIX = "summary"
DEFAULT_GROUP = "timeline-summary"


class SummaryConsumer(ProjectingConsumer):
    prefix = PREFIX
    default_group = DEFAULT_GROUP

    def ddl(self) -> list[str]:
        return summary_tables.summary_ddl()

    def write(self, cur: psycopg.Cursor, evaluations: list[Evaluation], as_of: dt.datetime) -> None:
        # Tier moves change far less often than rows: rewrite a customer's only when they differ from
        # what this process last wrote (remembered with the cached history, so forgotten on any doubt).
        memo = self.cache.memo
        moved = []
        for e in evaluations:
            changes = e.state.tier.changes if e.state is not None else None
            if e.customer_id not in memo or memo[e.customer_id] != changes:
                moved.append(e.customer_id)
            memo[e.customer_id] = changes
        write_rows(cur, evaluations, self.ranks, moves_of=set(moved))


def write_rows(
    cur: psycopg.Cursor,
    evaluations: Sequence[Evaluation],
    ranks: dict[str, int],
    suffix: str = "",
    moves_of: set[str] | None = None,
) -> None:
    """Upsert the rows of these evaluations (delete those without a state) and replace their tier moves.

    ``moves_of``: only these customers' tier moves are replaced (default: all of them).
    """
    rows, moves, gone = [], [], []
    for e in evaluations:
        if e.state is None:
            gone.append(e.customer_id)
            continue
        rows.append(summary_tables.summary_row(e.state, e.last_version, e.last_position))
        if moves_of is None or e.customer_id in moves_of:
            moves.extend(summary_tables.move_rows(e.state, ranks))
    summary_tables.upsert_summary(cur, rows, suffix)
    summary_tables.delete_summary(cur, gone, suffix)
    replaced = [e.customer_id for e in evaluations if moves_of is None or e.customer_id in moves_of]
    summary_tables.replace_moves(cur, replaced, moves, suffix)
