"""One page of a customer's timeline: the events of a few months, their PII opened, links to newer and older.

The page is chosen over the sealed history the state already read (no PII), so only its own events (and
those its corrections void) are read again and opened: a customer of ten thousand events costs a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from timeline.application.ports import StoredRow
from timeline.domain.recorded import RecordedEvent
from timeline.domain.types import EventType
from timeline.http.pages.paging import Paged, page_of
from timeline.http.pages.timeline_view import Month, listed, month_labels, months, voided_by
from timeline.http.service import Service
from timeline.projections.state import CustomerState

_ANCHORS = {"events": "timeline", "ledger": "ledger"}
_NOUNS = {"events": "events", "ledger": "lines"}
"""Where on the page a list's links land."""


@dataclass(frozen=True, slots=True)
class Links:
    newer: str | None
    older: str | None
    shown: str
    """``events 251–500 of 10,000, newest first``: where the page lies in the whole list."""


@dataclass(frozen=True, slots=True)
class TimelinePage:
    months: tuple[Month, ...]
    links: Links


def timeline_page(
    svc: Service,
    customer_id: str,
    sealed: Sequence[RecordedEvent],
    state: CustomerState,
    cursor: str | None,
    asked: dict[str, str | None],
) -> TimelinePage:
    """The page at ``cursor`` (``events``) of the events known at the state's instants."""
    zone = svc.engine.policy.zone
    shown = listed(sealed, state.as_of, state.known_at)
    paged = page_of(month_labels((e.occurred_at for e in shown), zone), cursor, "events")
    page = shown[paged.start : paged.stop]
    wanted = {voided_by(e) for e in page if e.type == EventType.CORRECTION_RECORDED}
    targets = [e for e in sealed if e.event_id in wanted and e.recorded_at <= state.known_at] if wanted else []
    rows = _rows(svc, customer_id, sealed, (*page, *targets))
    opened = {e.version: e for e in svc.engine.keyring().decode(rows, with_hash=False)}
    grouped = months([opened[e.version] for e in page], {t.event_id: opened[t.version] for t in targets}, zone)
    return TimelinePage(grouped, links(customer_id, asked, "events", paged, len(shown)))


def _rows(
    svc: Service, customer_id: str, sealed: Sequence[RecordedEvent], events: Sequence[RecordedEvent]
) -> list[StoredRow]:
    """The stored rows of ``events``: the stream's tail when they lie near its end (the newest page; one range
    read), else by key."""
    if not events:
        return []
    versions = {e.version for e in events}
    low = min(versions)
    if sealed[-1].version - low < 2 * len(versions):
        return [r for r in svc.engine.store.read_stream(customer_id, low - 1) if r.version in versions]
    return list(svc.engine.store.read_rows([(customer_id, v) for v in versions]).values())


def links(customer_id: str, asked: dict[str, str | None], name: str, paged: Paged, total: int) -> Links:
    """The newer and older pages' addresses (keeping the instants asked and the other list's page)."""

    def href(cursor: str | None) -> str:
        query = urlencode({k: v for k, v in {**asked, name: cursor}.items() if v})
        return f"/customers/{customer_id}" + (f"?{query}" if query else "") + f"#{_ANCHORS[name]}"

    noun = _NOUNS[name]
    shown = (
        f"{noun.capitalize()} {paged.start + 1:,}–{paged.stop:,} of {total:,}, newest first"
        if paged.stop > paged.start
        else f"No {noun}"
    )
    return Links(
        href(paged.newer) if paged.start else None,
        href(paged.older) if paged.older else None,
        shown,
    )
