"""Exceptions with messages meant for the person who sent the input."""

from __future__ import annotations


class TimelineError(Exception):
    """Base of every error the CLI reports as one line on stderr."""


class RejectedEvent(TimelineError):
    """The event breaks a rule of RULES.md §1–§2; nothing was stored."""


class ConfigurationError(TimelineError):
    """A setting (database URL, key, policy) is missing or unusable."""


class StoreUnavailable(TimelineError):
    """The database cannot be reached."""


class ConcurrencyConflict(TimelineError):
    """Another writer appended to the same customer first; retry."""


class TamperingDetected(TimelineError):
    """The stored history does not match its hash chain."""
