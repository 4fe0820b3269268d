"""JSON log lines (``--log-json`` or ``TIMELINE_LOG_JSON=1``): every log record one JSON object on one line.

For log shippers: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the fields an access line
of the service carries (``request_id``, ``method``, ``route``, ``status``, ``duration_ms``) and, for an error
logged with its exception, ``exception`` (the traceback as text). The standard library's ``logging`` with a
small formatter: nothing else is needed to write one object per record.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

import orjson
import typer

ACCESS_FIELDS = ("request_id", "method", "route", "status", "duration_ms")

LogJson = Annotated[
    bool,
    typer.Option(
        "--log-json", help="Log one JSON object per line (time, level, logger, message); or TIMELINE_LOG_JSON=1."
    ),
]


class JsonFormatter(logging.Formatter):
    """One record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_json(enabled: bool, *loggers: str) -> None:
    """With ``enabled``, every handler of the root logger writes JSON, and ``loggers`` log from INFO on."""
    if not enabled:
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    for name in loggers:
        logging.getLogger(name).setLevel(logging.INFO)
