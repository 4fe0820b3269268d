"""The public Python API: a timeline store opened by URL, and what the CLI does with it, as values.

What is not given comes from the ``TIMELINE_*`` environment variables (:class:`~timeline.settings.Settings`),
as for the command line.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from timeline.application.batch import Outcome, Summary
from timeline.application.jsonl import check_utf8, read_lines
from timeline.application.keyring import load_history
from timeline.application.states import StateReader
from timeline.application.verify import Report
from timeline.application.verify import verify as run_verify
from timeline.crypto import KekSource
from timeline.domain.errors import TimelineError
from timeline.domain.instants import in_utc, parse_instant
from timeline.domain.recorded import RecordedEvent
from timeline.engine import Engine, open_engine, verify_wrapper
from timeline.projections.state import CustomerState
from timeline.settings import Settings

When = dt.datetime | dt.date | str | None
"""A business or system time: an aware datetime, a date (its end in the policy's zone), ISO text, or now."""


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What became of an input: the counts, and every rejected event with why."""

    accepted: int
    duplicate: int
    rejected: int
    rejects: tuple[Outcome, ...]


class Timeline:
    """A timeline store with its key-encryption key and policy; close it, or use it in a ``with`` block."""

    def __init__(self, engine: Engine, kek: KekSource) -> None:
        self.engine = engine
        self._kek = kek
        self._reader = StateReader(engine.store, engine.policy)

    def ingest(
        self, source: str | Path | Iterable[str | bytes | Mapping[str, Any]], atomic: bool = False
    ) -> IngestReport:
        """Ingest a JSON Lines file (a path), or JSON lines or event dicts; ``atomic``: all of them or none."""
        summary, rejects = Summary(), []
        ingestor = self.engine.ingestor()
        if isinstance(source, str | Path):
            check_utf8(str(source))
            with Path(source).open("rb") as fh:
                outcomes = list(ingestor.ingest(read_lines(fh), atomic=atomic))
        else:
            lines = (json.dumps(item) if isinstance(item, Mapping) else item for item in source)
            outcomes = list(ingestor.ingest(read_lines(lines), atomic=atomic))
        for outcome in outcomes:
            summary.add(outcome)
            if outcome.status == "rejected":
                rejects.append(outcome)
        return IngestReport(summary.accepted, summary.duplicate, summary.rejected, tuple(rejects))

    def history(self, customer_id: str) -> list[RecordedEvent]:
        """The customer's events in business order, personal data opened where the key allows."""
        stored = load_history(self.engine.store, self.engine.keyring(), customer_id)
        if not stored:
            raise TimelineError(f"unknown customer {customer_id}: no events stored")
        return sorted(stored, key=lambda e: (e.occurred_at, e.position))

    def state(self, customer_id: str, as_of: When = None, known_at: When = None) -> CustomerState:
        """Tier, lifecycle, points, AUM and follow-ups as of a business time, as known at a system time."""
        return self._reader.state(customer_id, self._instant(as_of), self._instant(known_at))

    def states(self, as_of: When = None, known_at: When = None) -> Iterator[CustomerState]:
        """Every registered customer's state, in customer order."""
        return self._reader.all_states(self._instant(as_of), self._instant(known_at))

    def explain(self, customer_id: str, as_of: When = None, known_at: When = None) -> dict[str, Any]:
        """The state with the rules, events and points ledger behind it (``timeline explain --json``)."""
        return self.state(customer_id, as_of, known_at).explain_json()

    def verify(self, customer_id: str | None = None) -> Report:
        """Recompute the hash chains (one customer's, or all) and, with a key, check every key and sealed field."""
        return run_verify(self.engine.store, customer_id, verify_wrapper(self.engine.store, self._kek))

    def _instant(self, when: When) -> dt.datetime | None:
        if when is None:
            return None
        if isinstance(when, dt.datetime):
            if when.tzinfo is None:
                raise TimelineError(f"instant {when.isoformat()} needs a time zone")
            return in_utc(when)
        text = when.isoformat() if isinstance(when, dt.date) else when
        return parse_instant(text, self.engine.policy.time_zone, dt.datetime.now(dt.UTC))

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Timeline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open(
    url: str | None = None,
    *,
    kek: str | bytes | None = None,
    policy: str | None = None,
    create: bool = True,
    alongside_other_tables: bool = False,
    settings: Settings | None = None,
) -> Timeline:
    """``timeline.open(url)``: the store at ``url`` (default ``TIMELINE_DB``, else ``./timeline.db``).

    Made if missing, unless ``create=False``.
    ``kek``: the key-encryption key as base64 text or 32 bytes (default ``TIMELINE_KEK``/``TIMELINE_KEK_FILE``,
    else the key file beside a SQLite store). ``settings``: the configuration, instead of the environment.
    """
    config = settings if settings is not None else Settings()
    if isinstance(kek, bytes):
        kek = base64.urlsafe_b64encode(kek).decode()
    source = config.kek_source if kek is None else KekSource(kek, config.kek_file)
    engine = open_engine(
        config.store_url(url),
        kek=source,
        policy=config.policy_name(policy),
        keys=False,
        create=create,
        alongside_other_tables=alongside_other_tables,
    )
    return Timeline(engine, source)
