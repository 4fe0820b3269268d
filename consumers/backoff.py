"""Retrying with exponential backoff, for ever or up to a deadline: one policy for the relay and the consumers.

A long-running process retries for ever: one warning per retry, saying what
failed and how long it waits (0.5 s doubling up to a maximum), so a broker
that is away for an hour costs a few hundred log lines, not a flood. A run
that must end (``--once``) gives ``give_up_after``: once the operation has
failed without a success for that long, :meth:`Backoff.failed` raises
:class:`GaveUp` instead of waiting. It also gives up early rather than start an
attempt that could not end before the deadline (each attempt is bounded by
:meth:`Backoff.attempt_timeout`, which the clients' own timeouts are set to),
so a bounded run ends within ``give_up_after`` seconds of its last success.
"""

from __future__ import annotations

import logging
import threading
import time

from timeline.domain.errors import TimelineError

ATTEMPTS_PER_DEADLINE = 3
"""A bounded run's client timeouts are at most this fraction of the deadline, so it retries a few times."""


class GaveUp(TimelineError):
    """A bounded run failed for longer than it may wait (exit 1: the operation, not the input, failed)."""


def describe(exc: BaseException) -> str:
    """``Type: message`` once (kafka-python's messages often start with their own class name already)."""
    name, text = type(exc).__name__, str(exc).strip()
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def describe_kafka(exc: BaseException, bootstrap: str, within: float) -> str:
    """What failed, said plainly: a broker that did not answer in time is named with the time it had."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return f"Kafka broker at {bootstrap} not reachable within {within:g} s"
    return describe(exc)


class Backoff:
    """Delays between retries of one operation; ``give_up_after`` seconds without success ends a bounded run."""

    def __init__(
        self,
        log: logging.Logger,
        who: str,
        initial: float = 0.5,
        maximum: float = 30.0,
        give_up_after: float | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        if give_up_after is not None and give_up_after <= 0:
            raise ValueError("give_up_after must be positive")
        self.log = log
        self.who = who
        self.initial = initial
        self.maximum = maximum
        self.give_up_after = give_up_after
        self.stop_event = stop_event or threading.Event()
        self.delay = initial
        self.failures = 0
        self.last_error: str | None = None
        self._last_success = time.monotonic()

    def succeeded(self) -> None:
        """The operation worked: the next failure starts again from the initial delay and a full deadline."""
        self.delay = self.initial
        self._last_success = time.monotonic()

    def attempt_timeout(self, configured: float) -> float:
        """Seconds one attempt (a client's request or bootstrap) may take: ``configured``, bounded by the deadline."""
        if self.give_up_after is None:
            return configured
        return min(configured, self.give_up_after / ATTEMPTS_PER_DEADLINE)

    def remaining(self) -> float | None:
        """Seconds left before a bounded run gives up (None: unbounded)."""
        if self.give_up_after is None:
            return None
        return max(self._last_success + self.give_up_after - time.monotonic(), 0.0)

    def failed(self, exc: BaseException, doing: str, attempt: float = 0.0, why: str | None = None) -> None:
        """Log the failure and wait before the retry; raise :class:`GaveUp` if a bounded run is out of time.

        ``attempt``: how long the next attempt may take (it must end before the deadline too);
        ``why``: what failed, if better said than the exception says it.
        """
        self.failures += 1
        self.last_error = why or describe(exc)
        left = self.remaining()
        if left is not None and (left <= 0 or self.delay + attempt > left):
            raise GaveUp(
                f"{self.who}: {doing} failed for {self.give_up_after:g}s, giving up ({self.last_error})"
            ) from exc
        self.log.warning("%s: %s failed (%s); retrying in %.1fs", self.who, doing, self.last_error, self.delay)
        self.stop_event.wait(self.delay)
        self.delay = min(self.delay * 2, self.maximum)
