"""Whose customers a report is about, and the report as a set of named tables: what the branch report and
the worklist share.

A report counts customers under the branch and relationship manager they have
as of its ``as_of`` (as follow-ups are, POLICY §4), so both reports choose them
here; naming a branch or RM nobody has then is an error, not an empty report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from timeline.application.report_table import ReportTable, instant
from timeline.domain.errors import NoCustomers
from timeline.domain.policy import Policy
from timeline.projections.state import CustomerState


class NamedTables:
    """A report's tables, found by name (mixed into the report dataclasses, which hold ``tables``)."""

    tables: tuple[ReportTable, ...]

    def table(self, name: str) -> ReportTable:
        """The table of that name (``KeyError`` if there is none)."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)


def customers_with(
    states: Iterable[CustomerState],
    policy: Policy,
    as_of: dt.datetime,
    branch: str | None = None,
    rm: str | None = None,
) -> list[CustomerState]:
    """The states (as of ``as_of``) with that branch and RM (``None``: any); none of a named one: ``NoCustomers``."""
    chosen = [
        s
        for s in states
        if (branch is None or s.assignment.branch_id == branch)
        and (rm is None or s.assignment.relationship_manager == rm)
    ]
    if not chosen and (branch is not None or rm is not None):
        named = ([f"relationship manager {rm}"] if rm is not None else []) + (
            [f"branch {branch}"] if branch is not None else []
        )
        raise NoCustomers(f"no customer is with {' of '.join(named)} as of {instant(as_of, policy.zone)}")
    return chosen
