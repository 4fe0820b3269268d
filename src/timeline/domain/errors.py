"""Exceptions with messages meant for the person who sent the input."""

from __future__ import annotations


class TimelineError(Exception):
    """Base of every error the CLI reports as one line on stderr."""


class RejectedEvent(TimelineError):
    """The event breaks a rule of POLICY §1–§2; nothing was stored."""


class ConfigurationError(TimelineError):
    """A setting (database URL, key, policy) is missing or unusable."""


class NoStore(ConfigurationError):
    """The URL names no timeline store, and the command only reads one."""


class StoreUnavailable(TimelineError):
    """The database cannot be reached."""


class ConcurrencyConflict(TimelineError):
    """Another writer appended to the same customer first; retry."""


class UnknownCustomer(TimelineError):
    """No registration of that customer counts at the asked times."""


class UnknownTarget(RejectedEvent):
    """A correction names an event its customer's stream does not hold."""

    def __init__(self, target: object) -> None:
        super().__init__(f"correction names an unknown event {target}")
        self.target = target


class CorruptEvent(TimelineError):
    """A stored event cannot be read as the engine wrote it: the store was changed behind its back."""

    def __init__(self, customer_id: str, version: int, reason: str) -> None:
        super().__init__(
            f"stored event of customer {customer_id} at version {version} is unreadable ({reason}): "
            "the store was changed outside the engine; run `timeline verify`"
        )
        self.customer_id, self.version, self.reason = customer_id, version, reason

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        """Pickled with its fields: a worker process of ``state --all`` raises it to the parent."""
        return type(self), (self.customer_id, self.version, self.reason)


class NoCustomers(TimelineError):
    """A report names a branch or relationship manager that no customer has at the asked times."""
