"""A branch history delivered in two rounds, so that what was known then differs from what is known now.

The first round is the history as the branch's files first held it; the
second brings what changes the past: the late arrivals (events that occurred
days before they reached the file) and the corrections. Ingested as two
separate ingests, the store stamps them at different instants, so asking
*as known at* an instant between the rounds leaves the second round out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from timeline.synthetic.generate import Arrival


class Rounds:
    """Splits arrivals in file order; iterate :meth:`first` to the end before reading :attr:`later`.

    Every event of either round is valid where it lands: a correction voids an
    event of the first round; a customer with an event held back has its
    erasure (always its last event) held back too, so nothing follows it.
    """

    def __init__(self, arrivals: Iterable[Arrival]) -> None:
        self._arrivals = arrivals
        self.later: list[dict[str, Any]] = []
        """The second round, in file order (complete once :meth:`first` is exhausted)."""
        self.held_back: set[str] = set()
        """Customers with an event in the second round."""

    def first(self) -> Iterator[dict[str, Any]]:
        held = self.held_back
        for event, late in self._arrivals:
            kind = event["type"]
            if late or kind == "correction.recorded" or (kind == "customer.erased" and event["customer_id"] in held):
                self.later.append(event)
                held.add(event["customer_id"])
            else:
                yield event
