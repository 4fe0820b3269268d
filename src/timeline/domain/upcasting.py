"""Upcasting: old shapes of stored or incoming events to the current models.

Every stored event keeps the ``schema_version`` it was written with, and its
stored bytes never change (they are hash-chained). Readers upcast on the way
in: a function per (type, version) lifts a raw event dict one version up,
until it reaches the version the models in :mod:`timeline.domain.events` accept.
Version 1 is the first, so the table is empty; adding version 2 of a type
means registering one function here and bumping the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timeline.domain.errors import RejectedEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

CURRENT_VERSIONS: dict[str, int] = {}
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Declare how to lift ``event_type`` from ``from_version`` to the next one."""

    def decorate(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        CURRENT_VERSIONS[event_type] = max(CURRENT_VERSIONS.get(event_type, 1), from_version + 1)
        return fn

    return decorate


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Lift a raw event dict to the current schema version of its type."""
    if not UPCASTERS and "schema_version" not in raw:
        return raw
    event_type = raw.get("type")
    version = raw.get("schema_version", 1)
    if not isinstance(event_type, str) or isinstance(version, bool) or not isinstance(version, int):
        return raw
    current = CURRENT_VERSIONS.get(event_type, 1)
    if version > current:
        raise RejectedEvent(f"schema_version {version} of {event_type} is newer than this engine knows ({current})")
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise RejectedEvent(f"no upcaster for {event_type} version {version}")
        raw = step(raw)
        version += 1
        raw["schema_version"] = version
    return raw
