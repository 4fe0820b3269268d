"""A stream's fold kept between questions: what lets ``state`` asked again read only the events since.

The projection of every event of a stream answers as known from its latest
recording on; a longer stream grows it by the events since when they come
after every counted one (:meth:`Projection.extended`), else it is folded again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import EventType
from timeline.projections.counted import CORRECTION, business_order, counted
from timeline.projections.state import CustomerState, Projection, customer_state


@dataclass(frozen=True, slots=True)
class Folded:
    """The projection of every event of a stream (what it answers as known from the latest recording on),
    and which events it was folded from, so that a longer stream can reuse it."""

    length: int
    """How many events of the history were folded."""
    last: RecordedEvent
    """The last of them: the history still starts with them while it holds this very event there."""
    recorded: dt.datetime
    """The latest ``recorded_at`` among them."""
    occurred: dt.datetime
    """The latest ``occurred_at`` among them (corrections and voided events included)."""
    voided: frozenset[UUID]
    projection: Projection | None
    """None when the counted events do not start with a registration."""
    versions: PolicyTimeline | None = None
    """The policy versions it was folded under."""

    def state(
        self,
        history: Sequence[RecordedEvent],
        policy: Policy | PolicyTimeline,
        as_of: dt.datetime,
        known_at: dt.datetime,
    ) -> CustomerState:
        """The state as of ``as_of`` as known at ``known_at`` (``history`` is the one folded): from the
        projection when it can answer (and was folded under these versions), else folded from scratch."""
        projection = self.projection
        if (
            projection is not None
            and known_at >= self.recorded
            and as_of >= projection.horizon
            and _same(self.versions, policy)
        ):
            return projection.at(as_of, known_at)
        return customer_state(history, policy, as_of, known_at)


def fold(history: Sequence[RecordedEvent], policy: Policy | PolicyTimeline, previous: Folded | None = None) -> Folded:
    """Fold every event of ``history`` (stream order, not empty), reusing ``previous``, a fold of its first events.

    Reuse needs the events since to be counted ones that come after every
    counted event in business order — a stream growing the usual way. A
    correction, or an event earlier than the last one (a late event), folds
    everything again: that is exact whatever the arrival order; so does a
    ``previous`` folded under other policy versions.
    """
    versions = PolicyTimeline.of(policy)
    if previous is not None and not _same(previous.versions, versions):
        previous = None
    later = _later(history, previous) if previous is not None else None
    if previous is not None and previous.projection is not None and later is not None:
        if not later:
            return previous
        return Folded(
            len(history),
            history[-1],
            max(previous.recorded, *(e.recorded_at for e in later)),
            max(previous.occurred, *(e.occurred_at for e in later)),
            previous.voided,
            previous.projection.extended(later),
            versions,
        )
    included = counted(history)
    events = included.events
    registered = bool(events) and events[0].type == EventType.CUSTOMER_REGISTERED
    return Folded(
        len(history),
        history[-1],
        max(e.recorded_at for e in history),
        max(e.occurred_at for e in history),
        frozenset(included.voided_by),
        Projection(events, versions) if registered else None,
        versions,
    )


def _same(folded: PolicyTimeline | None, asked: Policy | PolicyTimeline) -> bool:
    """Whether a fold under ``folded`` answers for ``asked`` (the same versions, or the same one policy)."""
    if folded is None:
        return False
    if folded is asked:
        return True
    if isinstance(asked, PolicyTimeline):
        return folded == asked
    return folded.is_single and folded.first is asked


def _later(history: Sequence[RecordedEvent], previous: Folded) -> list[RecordedEvent] | None:
    """The events after those ``previous`` folded, in business order, if its projection can grow by them.

    ``history`` must still start with the events folded (it holds the very last of them in its place); the
    new ones must neither correct nor be voided, and must all come after the last counted event.
    """
    length, projection = previous.length, previous.projection
    if projection is None or length > len(history) or history[length - 1] is not previous.last:
        return None
    later = sorted(history[length:], key=business_order)
    if later and (
        business_order(later[0]) <= business_order(projection.events[-1])
        or any(e.type == CORRECTION or e.event_id in previous.voided for e in later)
    ):
        return None
    return later
