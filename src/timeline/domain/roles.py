"""Who may do what: the roles, the principal a request acts as, and the role × action matrix.

The matrix is data (:data:`PERMISSIONS`), so the service, the tests and the
documentation read one table. Customer data is further limited by scope
(:func:`in_scope`): a branch head sees the customers of their branch, a
relationship manager their own customers, both judged by the customer's
assignment as of now — a customer who moved to another branch leaves the old
branch head's sight, even for an ``as_of`` before the move.

Anything not granted is refused; no role is granted by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from timeline.domain.errors import TimelineError


class Role(StrEnum):
    COMPLIANCE = "compliance"
    BRANCH_HEAD = "branch_head"
    RM = "rm"
    OPS = "ops"
    SOURCE = "source"


class Action(StrEnum):
    STATE = "state"
    EXPLAIN = "explain"
    HISTORY = "history"
    HISTORY_PII = "history_pii"
    CUSTOMERS_LIST = "customers_list"
    FOLLOWUPS = "followups"
    VERIFY = "verify"
    STATUS = "status"
    METRICS = "metrics"
    ACCESS_LOG = "access_log"
    INGEST = "ingest"
    ERASE = "erase"
    """Request a customer's erasure (POLICY §7): appended as a ``customer.erased`` event."""
    WHATIF = "whatif"
    """Replay every customer under a candidate policy (issue 13): a branch head for their branch only."""
    KNOWN_AT_PAST = "known_at_past"
    """Ask with a ``known_at`` other than now: what the engine knew then (compliance's alone)."""


_CUSTOMER_DATA = frozenset({Action.STATE, Action.EXPLAIN, Action.HISTORY, Action.HISTORY_PII})

PERMISSIONS: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {
        Role.COMPLIANCE: _CUSTOMER_DATA
        | {Action.CUSTOMERS_LIST, Action.VERIFY, Action.ACCESS_LOG, Action.ERASE, Action.WHATIF, Action.KNOWN_AT_PAST},
        Role.BRANCH_HEAD: frozenset({Action.STATE, Action.EXPLAIN, Action.CUSTOMERS_LIST, Action.WHATIF}),
        Role.RM: _CUSTOMER_DATA | {Action.CUSTOMERS_LIST, Action.FOLLOWUPS},
        Role.OPS: frozenset({Action.STATUS, Action.VERIFY, Action.METRICS}),
        Role.SOURCE: frozenset({Action.INGEST}),
    }
)
"""What each role may do. Customer actions are further limited to the customers :func:`in_scope`."""

SCOPED_ACTIONS = frozenset({*_CUSTOMER_DATA, Action.CUSTOMERS_LIST, Action.FOLLOWUPS})
"""Actions on customers: allowed only for the customers (or follow-ups) in the principal's scope."""

TRAILED_ACTIONS = frozenset({Action.STATE, Action.EXPLAIN, Action.HISTORY_PII})
"""Actions recorded in the access trail: a named customer's state or explanation, and whatever shows PII."""


class InvalidPrincipal(TimelineError):
    """A principal's role and its scope (rm, branch) do not fit together."""


class Forbidden(TimelineError):
    """The principal's role may not do this at all (HTTP 403)."""


class OutOfScope(TimelineError):
    """The customer is outside the principal's sight (HTTP 404: its existence is not revealed)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a grant's name (or a token's subject), its role, and its scope."""

    name: str
    role: Role
    rm: str | None = None
    """The relationship manager a principal of role ``rm`` acts as (the customers' ``relationship_manager``)."""
    branch: str | None = None
    """The branch a principal of role ``branch_head`` heads (the customers' ``branch_id``)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidPrincipal("a principal needs a name")
        if self.role is Role.RM and not self.rm:
            raise InvalidPrincipal("role rm needs the relationship manager it acts as (rm)")
        if self.role is Role.BRANCH_HEAD and not self.branch:
            raise InvalidPrincipal("role branch_head needs the branch it heads (branch)")
        if self.rm and self.role is not Role.RM:
            raise InvalidPrincipal(f"rm applies only to role rm, not {self.role}")
        if self.branch and self.role is not Role.BRANCH_HEAD:
            raise InvalidPrincipal(f"branch applies only to role branch_head, not {self.role}")


def parse_role(text: str) -> Role:
    """The role named ``text``; an unknown name is an :class:`InvalidPrincipal` listing the roles."""
    try:
        return Role(text)
    except ValueError:
        raise InvalidPrincipal(f"unknown role {text!r}: one of {', '.join(Role)}") from None


def allows(role: Role, action: Action) -> bool:
    """Whether the role may perform the action at all (scope aside)."""
    return action in PERMISSIONS[role]


def in_scope(principal: Principal, branch_id: str | None, relationship_manager: str | None) -> bool:
    """Whether a customer assigned (as of now) to this branch and manager is within the principal's sight."""
    if principal.role is Role.COMPLIANCE:
        return True
    if principal.role is Role.BRANCH_HEAD:
        return branch_id is not None and branch_id == principal.branch
    if principal.role is Role.RM:
        return relationship_manager is not None and relationship_manager == principal.rm
    return False


def authorize(
    principal: Principal,
    action: Action,
    assignment: tuple[str | None, str | None] | None = None,
    known_at_past: bool = False,
) -> None:
    """Raise unless the principal may do ``action`` (on the customer with this assignment, if one is named).

    ``assignment``: the customer's (branch, relationship manager) as of now. The role is judged first, so
    a forbidden action is a 403 whatever the customer; a customer out of scope is told apart from none.
    """
    if not allows(principal.role, action):
        raise Forbidden(f"role {principal.role} is not granted {action}")
    if known_at_past and not allows(principal.role, Action.KNOWN_AT_PAST):
        raise Forbidden(f"role {principal.role} may ask only as known now: a past known_at is for compliance")
    if assignment is not None and action in SCOPED_ACTIONS and not in_scope(principal, *assignment):
        raise OutOfScope("no such customer")
