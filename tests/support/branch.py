"""A store seen the way the projection rules talk about it: send events at a system time, ask states."""

from __future__ import annotations

import datetime as dt

from tests.support.instants import utc
from timeline.engine import Engine


class Branch:
    """Send events at a system time, ask states.

    ``recording_at`` is the system time (``recorded_at``) given to what is sent
    next; it defaults to far after every business time used in the tests.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def recording_at(self, when: str) -> Branch:
        self.now = utc(when)
        return self

    def send(self, *events: dict, batch_size: int = 1000) -> list:
        """Ingest events (a batch), returning each outcome; rejects do not raise."""
        ingestor = self.engine.ingestor(clock=lambda: self.now, batch_size=batch_size)
        return list(ingestor.ingest(list(enumerate(events, 1))))

    def accept(self, *events: dict, batch_size: int = 1000) -> list:
        """Ingest events that must all be accepted."""
        outcomes = self.send(*events, batch_size=batch_size)
        bad = [(o.line, o.error) for o in outcomes if o.status != "accepted"]
        assert not bad, bad
        return outcomes

    def reject(self, event: dict) -> str:
        """Ingest one event that must be rejected; return the reason."""
        [outcome] = self.send(event)
        assert outcome.status == "rejected", outcome
        return outcome.error

    def state(self, customer_id: str = "C1", as_of: str | None = None, known_at: str | None = None):
        from timeline.application.states import StateReader

        reader = StateReader(self.engine.store, self.engine.policy)
        return reader.state(customer_id, utc(as_of) if as_of else self.now, utc(known_at) if known_at else self.now)

    def stored_types(self, customer_id: str) -> list[str]:
        from timeline.application.keyring import load_history

        return [e.type for e in load_history(self.engine.store, self.engine.keyring(), customer_id)]
