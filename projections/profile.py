"""What staff learn about a customer beyond money: the key-person flag (关键人), contacts, surveys, complaints.

A fold over counted events in business order, like the others: its state after
the last event taken is the answer at every later business time, so windows
("the last 12 months", "the last 90 days") are cut when asked, not here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import EventType

_PROFILE, _VISIT, _GREETING, _SURVEY, _FILED, _RESOLVED = (
    EventType.CUSTOMER_PROFILE_UPDATED,
    EventType.VISIT_RECORDED,
    EventType.GREETING_SENT,
    EventType.SURVEY_COMPLETED,
    EventType.COMPLAINT_FILED,
    EventType.COMPLAINT_RESOLVED,
)

PROFILE_TYPES = frozenset({_PROFILE, _VISIT, _GREETING, _SURVEY, _FILED, _RESOLVED})
"""The event types :meth:`ProfileFold.add` reads."""


@dataclass(frozen=True, slots=True)
class Survey:
    at: dt.datetime
    score: int
    event_id: UUID


@dataclass(frozen=True, slots=True)
class Complaint:
    complaint_id: str
    category: str
    filed_at: dt.datetime
    resolved_at: dt.datetime | None
    satisfied: bool | None
    """The resolution's ``satisfied``; None while unresolved."""


@dataclass(frozen=True, slots=True)
class Profile:
    key_person: bool
    key_person_since: dt.datetime | None
    """When the flag took its current value by an update (None: never set, so ``False`` from registration)."""
    key_person_event_id: UUID | None
    last_contact_at: dt.datetime | None
    """The last visit or greeting: how staff last reached the customer (greetings are not activity, this is)."""
    surveys: tuple[Survey, ...]
    complaints: tuple[Complaint, ...]


class ProfileFold:
    """:class:`Profile` gathered one counted event at a time, in business order."""

    __slots__ = ("key_person", "since", "flag_event", "last_contact", "surveys", "filed", "resolved")

    def __init__(self) -> None:
        self.key_person = False
        self.since: dt.datetime | None = None
        self.flag_event: UUID | None = None
        self.last_contact: dt.datetime | None = None
        self.surveys: list[Survey] = []
        self.filed: dict[str, tuple[str, dt.datetime]] = {}
        self.resolved: dict[str, tuple[dt.datetime, bool]] = {}

    def copy(self) -> ProfileFold:
        other = ProfileFold()
        other.key_person, other.since, other.flag_event = self.key_person, self.since, self.flag_event
        other.last_contact, other.surveys = self.last_contact, self.surveys.copy()
        other.filed, other.resolved = self.filed.copy(), self.resolved.copy()
        return other

    def add(self, event: RecordedEvent) -> None:
        kind, data = event.type, event.data
        if kind == _PROFILE:
            flag = data.get("key_person")
            if flag is not None and flag != self.key_person:
                self.key_person, self.since, self.flag_event = flag, event.occurred_at, event.event_id
        elif kind == _VISIT or kind == _GREETING:
            self.last_contact = event.occurred_at
        elif kind == _SURVEY:
            self.surveys.append(Survey(event.occurred_at, data["score"], event.event_id))
        elif kind == _FILED:
            self.filed[data["complaint_id"]] = (data["category"], event.occurred_at)
        elif kind == _RESOLVED:
            self.resolved[data["complaint_id"]] = (event.occurred_at, data["satisfied"])

    def profile(self) -> Profile:
        complaints = []
        for complaint_id, (category, filed_at) in self.filed.items():
            resolved_at, satisfied = self.resolved.get(complaint_id, (None, None))
            complaints.append(Complaint(complaint_id, category, filed_at, resolved_at, satisfied))
        return Profile(
            self.key_person,
            self.since,
            self.flag_event,
            self.last_contact,
            tuple(self.surveys),
            tuple(complaints),
        )
