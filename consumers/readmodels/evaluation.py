"""What a read model computes of one customer: the state as of an instant, and when to look again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from timeline.domain.errors import UnknownCustomer
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.projections.folding import Folded
from timeline.projections.state import CustomerState, customer_state

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Evaluation:
    """A customer's state as of ``as_of`` (None: not registered), and when to look again."""

    customer_id: str
    state: CustomerState | None
    last_version: int
    last_position: int
    recheck_at: dt.datetime | None


def evaluate(
    customer_id: str,
    history: Sequence[RecordedEvent],
    policy: Policy | PolicyTimeline,
    as_of: dt.datetime,
    folded: Folded | None = None,
) -> Evaluation:
    """The state as of ``as_of`` (as known then), and the next instant at which it must be looked at again.

    ``policy``: the versions in force as known at ``as_of`` (a plain policy: that one for all time);
    ``folded``: the fold of this very history, when the caller keeps one.
    """
    try:
        if folded is None:
            state: CustomerState | None = customer_state(history, policy, as_of, as_of)
        else:
            state = folded.state(history, policy, as_of, as_of)
    except UnknownCustomer:
        state = None
    if folded is not None and folded.occurred <= as_of and folded.recorded <= as_of:
        later = []
    else:
        later = [e.occurred_at for e in history if e.occurred_at > as_of]
        later += [e.recorded_at for e in history if e.recorded_at > as_of]
    if state is not None and state.next_change_at is not None:
        later.append(state.next_change_at)
    return Evaluation(
        customer_id,
        state,
        max(map(_version, history)),
        max(map(_position, history)),
        min(later) if later else None,
    )


_version = attrgetter("version")
_position = attrgetter("position")
