"""Validation of input lines in a worker process: the stateless half of ingestion.

Decoding a line, validating it against the event models and building its
canonical content need nothing but the line itself, and take about a third
of the Python time of ingesting it. For a large input the ingesting process
hands its raw lines to a worker (``python -m timeline.application.prepare``, a fresh
interpreter: nothing of the parent's threads or ``__main__`` is inherited)
and gets back, in order, each line's :class:`Prepared` event or the reason
it was refused. The worker runs the very functions the ingesting process
runs for small inputs (:func:`prepare_line`), so outcomes and messages do not
depend on where a line was read.

Frames on the pipes are a 4-byte big-endian length and a pickle (between two
processes of the same program); an empty frame ends the input.

Not :mod:`multiprocessing`: its spawned children re-run the parent's
``__main__`` module, so a script that calls the ingest API without an
``if __name__ == "__main__"`` guard would run again, side effects and all,
inside the worker (seen: a benchmark script ingesting a second time).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO, Any, NamedTuple

from timeline.application.codec import content_of
from timeline.application.jsonl import BLANK, JsonLines, Line, Overlong, read_line
from timeline.domain.errors import RejectedEvent
from timeline.domain.events import parse_event

log = logging.getLogger(__name__)

LINES_PER_FRAME = 1000
FRAME_BYTES = 1 << 23
"""A frame ends at this many bytes of lines, however few: memory stays bounded for long lines."""
MAX_REASON_CHARS = 1000
"""A refusal quoting a long value is cut there: the reject report stays one readable line."""
FRAMES_AHEAD = 4
"""Frames sent to the worker and not yet taken by the ingestor: how far validation may run ahead."""
_LENGTH = 4


class Prepared(NamedTuple):
    """An input event validated against its model: its canonical content, instant and id.

    A named tuple: one is made per event, and a tuple is built in a fraction of a dataclass's time.
    """

    content: dict[str, Any]
    event_id: uuid.UUID
    sent: bool
    """Whether the sender chose ``event_id`` (else the engine assigned it)."""
    occurred_at: dt.datetime

    @property
    def sent_id(self) -> uuid.UUID | None:
        return self.event_id if self.sent else None


@dataclass(frozen=True, slots=True)
class Refused:
    """An input line that is not a valid event: the reason, and the event id it claimed (for the report)."""

    reason: str
    claimed_id: uuid.UUID | None


def prepare(raw: Any, line: int | None = None) -> Prepared:
    """Validate one decoded JSON value into a :class:`Prepared` event, or raise RejectedEvent.

    Any other exception is a bug in validation: it is logged with its
    traceback and the value is refused, so one input never stops a run.
    """
    try:
        event = parse_event(raw)
        sent = event.event_id is not None
        event_id = event.event_id if sent else uuid.uuid4()
        return Prepared(content_of(event, event_id), event_id, sent, event.occurred_at)  # type: ignore[arg-type]
    except RejectedEvent:
        raise
    except Exception as exc:
        raise _internal_error(exc, line) from None


def _internal_error(exc: Exception, line: int | None = None) -> RejectedEvent:
    """The refusal of an input that validation failed on unexpectedly; logs the bug (call it in ``except``)."""
    log.exception("bug: validating %s failed unexpectedly; it is rejected", f"line {line}" if line else "an input")
    return RejectedEvent(f"internal error validating this line: {type(exc).__name__}: {exc}")


def claimed_id(raw: Any) -> uuid.UUID | None:
    """The event id an invalid input claimed, if it reads as one."""
    if isinstance(raw, dict):
        try:
            return uuid.UUID(str(raw.get("event_id")))
        except ValueError:
            return None
    return None


def prepare_line(raw: Line, line: int | None = None) -> Prepared | Refused | None:
    """One raw input line as an event, a refusal, or ``None`` for a blank line; never raises."""
    try:
        value = read_line(raw)
    except Exception as exc:
        return Refused(_reason(_internal_error(exc, line)), None)
    if value is BLANK:
        return None
    if isinstance(value, RejectedEvent):
        return Refused(_reason(value), None)
    try:
        return prepare(value, line)
    except RejectedEvent as exc:
        return Refused(_reason(exc), claimed_id(value))


def _reason(exc: RejectedEvent) -> str:
    text = str(exc)
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "… (cut)"


def prepared_lines(lines: JsonLines, workers: bool = True) -> Iterator[tuple[int, Prepared | Refused]]:
    """``(line number, Prepared or Refused)`` for every non-blank line, in order.

    An input of at most one frame is read here; a longer one by a worker
    process (unless ``workers`` is false), started once the second frame is
    read so that small inputs never pay for starting it. If the worker
    cannot start or stops, the lines it did not answer are read here.
    """
    numbered = lines.numbered()
    first = _frame(numbered)
    rest = _frame(numbered)
    if not rest or not workers:
        yield from _here([first, rest], numbered)
        return
    try:
        worker = _Worker(numbered, [first, rest])
    except OSError as exc:
        log.warning("no validation worker (%s): validating in this process", exc)
        yield from _here([first, rest], numbered)
        return
    with worker:
        yield from worker.results()
    if worker.unanswered:
        yield from _here(list(worker.unanswered), numbered)


def _frame(numbered: Iterator[tuple[int, Line]]) -> list[tuple[int, Line]]:
    """The next lines, up to :data:`LINES_PER_FRAME` of them or :data:`FRAME_BYTES` of their bytes."""
    frame = []
    size = 0
    for item in numbered:
        frame.append(item)
        raw = item[1]
        size += len(raw) if type(raw) is not Overlong else 0
        if len(frame) == LINES_PER_FRAME or size >= FRAME_BYTES:
            break
    return frame


def _here(
    frames: list[list[tuple[int, Line]]], numbered: Iterator[tuple[int, Line]]
) -> Iterator[tuple[int, Prepared | Refused]]:
    """The lines of ``frames``, then the rest of ``numbered``, read in this process."""
    for number, raw in chain(chain.from_iterable(frames), numbered):
        result = prepare_line(raw, number)
        if result is not None:
            yield number, result


class _Worker:
    """A validation worker process, fed by one thread and read by another.

    Feeding and reading in threads of their own means neither process ever
    waits on a full pipe while the other does; ``FRAMES_AHEAD`` bounds what
    is read from the input before the ingestor asks for it. Frames stay in
    :attr:`unanswered` until their results are back, so a worker that stops
    loses no line.
    """

    def __init__(self, numbered: Iterator[tuple[int, Line]], frames: list[list[Any]]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = subprocess.Popen(_worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.unanswered: deque[list[tuple[int, Line]]] = deque()
        self._ahead = threading.Semaphore(FRAMES_AHEAD)
        self._results: queue.Queue[list[tuple[int, Prepared | Refused]] | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._feeder = threading.Thread(
            target=self._feed, args=(numbered, frames), name="timeline-prepare-feed", daemon=True
        )
        self._reader = threading.Thread(target=self._read, name="timeline-prepare-read", daemon=True)

    def __enter__(self) -> _Worker:
        self._feeder.start()
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ahead.release(FRAMES_AHEAD)
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._feeder.join()
        self._reader.join()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    def results(self) -> Iterator[tuple[int, Prepared | Refused]]:
        """The worker's results, until the input ends or the worker stops (see :attr:`unanswered`)."""
        while True:
            frame = self._results.get()
            if frame is None:
                return
            if isinstance(frame, _Stopped):
                log.warning("%s: validating the rest in this process", frame)
                return
            if isinstance(frame, BaseException):
                raise frame
            self._ahead.release()
            yield from frame

    def _feed(self, numbered: Iterator[tuple[int, Line]], frames: list[list[Any]]) -> None:
        pipe = self._process.stdin
        assert pipe is not None
        pending = iter(frames)
        while True:
            self._ahead.acquire()
            if self._stop.is_set():
                return
            try:
                frame = next(pending, None)
                if frame is None:
                    frame = _frame(numbered)
            except BaseException as exc:  # reading the input failed: the ingest fails as it would here
                self._results.put(exc)
                return
            if frame:
                self.unanswered.append(frame)
            try:
                _write_frame(pipe, pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL) if frame else b"")
            except OSError:  # the worker is gone: the reader says so
                return
            if not frame:
                return

    def _read(self) -> None:
        pipe = self._process.stdout
        assert pipe is not None
        try:
            while True:
                body = _read_frame(pipe)
                if body is None:
                    if not self._stop.is_set():
                        self._results.put(_Stopped(self._process))
                    return
                if not body:
                    self._results.put(None)
                    return
                results = [_received(item) for item in pickle.loads(body)]
                self.unanswered.popleft()
                self._results.put(results)
        except OSError:
            self._results.put(_Stopped(self._process))


class _Stopped(Exception):
    """The worker stopped before answering every frame."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        try:
            code: int | None = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        why = f"exit code {code}" if code is not None else "it closed its output"
        super().__init__(f"the validation worker stopped ({why})")


def _worker_command() -> list[str]:
    """The worker: this interpreter, running this module (with the importing process's path)."""
    return [sys.executable, "-m", "timeline.application.prepare"]


def _received(item: tuple[Any, ...]) -> tuple[int, Prepared | Refused]:
    """A worker's result for one line, rebuilt: ids and instants travel as text."""
    if len(item) == 3:
        number, reason, claimed = item
        return number, Refused(reason, uuid.UUID(claimed) if claimed else None)
    number, content, event_id, sent = item
    occurred_at = dt.datetime.fromisoformat(content["occurred_at"])
    return number, Prepared(content, uuid.UUID(int=event_id), sent, occurred_at)


def _sent(number: int, result: Prepared | Refused) -> tuple[Any, ...]:
    if isinstance(result, Refused):
        return number, result.reason, str(result.claimed_id) if result.claimed_id else None
    return number, result.content, result.event_id.int, result.sent


def _write_frame(pipe: IO[bytes], body: bytes) -> None:
    pipe.write(len(body).to_bytes(_LENGTH, "big"))
    pipe.write(body)
    pipe.flush()


def _read_frame(pipe: IO[bytes]) -> bytes | None:
    """One frame's body; ``None`` at the end of the pipe."""
    head = pipe.read(_LENGTH)
    if len(head) < _LENGTH:
        return None
    size = int.from_bytes(head, "big")
    body = pipe.read(size) if size else b""
    if len(body) < size:
        return None
    return body


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The worker's loop: frames of numbered raw lines in, frames of results out, until an empty frame."""
    while (body := _read_frame(source)) is not None and body:
        results = []
        for number, raw in pickle.loads(body):
            result = prepare_line(raw, number)
            if result is not None:
                results.append(_sent(number, result))
        _write_frame(sink, pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
    _write_frame(sink, b"")


def main() -> None:
    """The worker process: Ctrl-C is the ingesting process's to handle (it stops the worker)."""
    import signal

    from timeline.application.process import tune_gc_for_bulk_work

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_gc_for_bulk_work()
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the ingesting process is gone
        pass


if __name__ == "__main__":
    main()
