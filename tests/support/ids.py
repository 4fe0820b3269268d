"""The ids of input events, as the assertions compare them."""

from __future__ import annotations

from typing import Any
from uuid import UUID


def ids(*events: dict[str, Any]) -> set[str]:
    """The event ids of these input events."""
    return {e["event_id"] for e in events}


def uid(event: dict[str, Any]) -> UUID:
    """The event id of one input event, as the engine reports it."""
    return UUID(event["event_id"])
