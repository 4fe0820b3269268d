"""What the commands print: the two consoles, JSON lines, counted nouns, local instants, progress bars."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

err = Console(stderr=True)
out = Console(highlight=False)


def emit(obj: Any) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def printable(text: str) -> str:
    """``text`` with any lone surrogate (quoted from hostile input) written as its escape, never an encoding error."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def counted(n: int | float, noun: str, nouns: str | None = None) -> str:
    """``1 customer``, ``2 customers``, ``1.5 years``."""
    number = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{number} {noun if n == 1 else nouns or noun + 's'}"


def local(moment: dt.datetime, zone: ZoneInfo) -> str:
    """An instant in the policy's time zone with its offset, as ``--as-of`` accepts it back."""
    return moment.astimezone(zone).isoformat()


def local_as_of(moment: dt.datetime, zone: ZoneInfo) -> str:
    """:func:`local`, said to be a day's end when it is its last instant (what ``--as-of DATE`` means)."""
    there = moment.astimezone(zone)
    text = there.isoformat()
    if there.time() == dt.time.max:
        return f"{text} (end of day)"
    return text


class input_progress:
    """The input's stream, with a progress bar over bytes when stderr is a terminal.

    A stream, not its lines: :class:`~timeline.application.jsonl.JsonLines` reads it a
    bounded line at a time, so an over-long line is never held whole.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> Any:
        self.progress = Progress(
            TextColumn("ingesting"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self.progress.start()
        if self.path == "-":
            return sys.stdin.buffer
        self.fh = self.progress.open(self.path, "rb")
        return self.fh

    def __exit__(self, *exc: object) -> None:
        if self.path != "-":
            self.fh.close()
        self.progress.stop()


class log_progress:
    """A progress bar over log positions, on stderr when it is a terminal."""

    def __init__(self, label: str) -> None:
        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),  # copes with a total not known yet
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
            redirect_stdout=False,  # JSON lines stream to stdout while the bar runs on stderr
        )

    def __enter__(self) -> Any:
        self.progress.start()
        task = self.progress.add_task("log", total=None)

        def advance(position: int, head: int) -> None:
            self.progress.update(task, completed=position, total=head)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
