"""Every read model by name: what ``consume NAME``, ``tick``, ``status`` and ``rebuild NAME`` know of.

Light to import (the CLI builds its commands from it at every start): a read
model's classes are imported when first asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from timeline.domain.errors import TimelineError

if TYPE_CHECKING:
    from timeline.consumers.readmodels.runner import ProjectingConsumer


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ReadModel:
    name: str
    consumer_path: str
    """``module:Class`` of its :class:`ProjectingConsumer`."""
    description: str
    """One line for the CLI's help."""
    rebuild_path: str | None = None
    """``module:function`` that computes the whole view again and swaps it in (None: it cannot be rebuilt)."""

    @property
    def consumer(self) -> type[ProjectingConsumer]:
        return _load(self.consumer_path)

    @property
    def rebuild(self) -> Callable[..., Any] | None:
        return _load(self.rebuild_path) if self.rebuild_path else None

    @property
    def prefix(self) -> str:
        """The prefix of its tables (``{prefix}_events``, ``{prefix}_offsets``, …)."""
        return self.consumer.prefix


READ_MODELS: dict[str, ReadModel] = {
    m.name: m
    for m in (
        ReadModel(
            "summary",
            "timeline.consumers.readmodels.summary:SummaryConsumer",
            "Keep customer_summary (and tier moves) up to date, each message applied exactly once.",
            "timeline.consumers.readmodels.rebuild:rebuild",
        ),
        ReadModel(
            "alerts",
            "timeline.consumers.readmodels.alerts:AlertsConsumer",
            "Alert (table `alerts` and a log line) when a customer becomes at-risk or drops a tier, with why.",
        ),
    )
}


def read_model(name: str) -> ReadModel:
    """The read model of this name; the error lists the names there are."""
    try:
        return READ_MODELS[name]
    except KeyError:
        raise TimelineError(f"no read model {name!r}: {' or '.join(READ_MODELS)}") from None
