"""The policy versions an ingest decides under: the store's, as known at the time of the batch (issue 13).

Every decision at a business instant uses the version in force there, as
known when the decision is made: the versions recorded by the batch's
``recorded_at``, which is what ``state --known-at`` of that instant answers
under. The store's policy stream is read again before each batch (one read
when nothing was published), so a version published while an ingest runs
decides from the next batch on.
"""

from __future__ import annotations

import datetime as dt

from timeline.application.policy_store import PolicyStream
from timeline.application.ports import EventStore
from timeline.domain.policy import Policy
from timeline.domain.policy_versions import PolicyTimeline


class VersionsInForce:
    """The versions as known at the batch being decided; called, what the rules ask."""

    def __init__(self, store: EventStore, base: Policy) -> None:
        self.stream = PolicyStream(store, base)
        self.timeline = PolicyTimeline.single(base)

    def __call__(self) -> PolicyTimeline:
        return self.timeline

    def refresh(self, now: dt.datetime) -> None:
        """Read what was published since the last batch; keep the versions recorded by ``now``."""
        self.timeline = self.stream.timeline().known_at(now)
