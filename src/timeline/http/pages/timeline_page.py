"""One page of a customer's timeline: the events of a few months, their PII opened, links to newer and older.

The page is chosen over the sealed history the state already read (no PII), so only its own events (and
those its corrections void) are read again and opened: a customer of ten thousand events costs a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from timeline.domain.recorded import RecordedEvent
from timeline.http.pages.paging import Paged, page_of
from timeline.http.pages.timeline_view import Month, listed, month_of, months, voided_by
from timeline.http.service import Service
from timeline.projections.state import CustomerState

_ANCHORS = {"events": "timeline", "ledger": "ledger"}
"""Where on the page a list's links land."""


@dataclass(frozen=True, slots=True)
class Links:
    newer: str | None
    older: str | None
    shown: str
    """``events 251–500 of 10,000``: where the page lies in the whole list."""


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
    paged = page_of([month_of(e.occurred_at, zone) for e in shown], cursor, "events")
    page = shown[paged.start : paged.stop]
    by_id = {e.event_id: e for e in sealed if e.recorded_at <= state.known_at}
    targets = [by_id[t] for e in page if (t := voided_by(e)) in by_id and e.type == "correction.recorded"]
    rows = svc.engine.store.read_rows([(customer_id, e.version) for e in (*page, *targets)])
    opened = {e.version: e for e in svc.engine.keyring().decode(list(rows.values()), with_hash=False)}
    grouped = months([opened[e.version] for e in page], {t.event_id: opened[t.version] for t in targets}, zone)
    return TimelinePage(grouped, links(customer_id, asked, "events", paged, len(shown)))


def links(customer_id: str, asked: dict[str, str | None], name: str, paged: Paged, total: int = 0) -> Links:
    """The newer and older pages' addresses (keeping the instants asked and the other list's page)."""

    def href(cursor: str | None) -> str:
        query = urlencode({k: v for k, v in {**asked, name: cursor}.items() if v})
        return f"/customers/{customer_id}" + (f"?{query}" if query else "") + f"#{_ANCHORS[name]}"

    shown = f"{paged.start + 1:,}–{paged.stop:,} of {total:,}" if paged.stop > paged.start else f"none of {total:,}"
    return Links(
        href(paged.newer) if paged.start else None,
        href(paged.older) if paged.older else None,
        shown,
    )
