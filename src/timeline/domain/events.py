"""The event models of POLICY §1: the one source of truth for every event.

Each event type is an envelope model whose ``type`` is a literal and whose
``data`` is a strict model of its own. JSON Schemas, PII field lists, the
canonical form and validation all derive from these classes.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from timeline.domain.errors import RejectedEvent
from timeline.domain.money import Money
from timeline.domain.upcasting import upcast

SCHEMA_VERSION = 1

CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
Points = Annotated[int, Field(gt=0, le=100_000_000, strict=True)]


def pii(**kwargs: Any) -> Any:
    """A field holding personal data (POLICY §7): encrypted at rest, erasable."""
    return Field(json_schema_extra={"x-pii": True}, **kwargs)


def _date_text(value: Any) -> Any:
    """A date is ``YYYY-MM-DD`` text: not a timestamp, not a number."""
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("must be a date YYYY-MM-DD")
    return value


PlainDate = Annotated[dt.date, BeforeValidator(_date_text)]

EARLIEST_DATE = dt.date(1900, 1, 1)
"""No date or instant of an event is earlier: a year 1 or 1066 is a typo, not history."""
LATEST_DUE_DATE = dt.date(2199, 12, 31)
EARLIEST_INSTANT = dt.datetime.combine(EARLIEST_DATE, dt.time(), dt.UTC)
_EASTERNMOST = dt.timedelta(hours=14)
"""UTC+14 (Kiribati): at any instant, no place on Earth has a later date than UTC's date this much later."""


def _from_1900(value: dt.date) -> dt.date:
    if value < EARLIEST_DATE:
        raise ValueError(f"must be on or after {EARLIEST_DATE}")
    return value


def _due_range(value: dt.date) -> dt.date:
    if not EARLIEST_DATE <= value <= LATEST_DUE_DATE:
        raise ValueError(f"must be from {EARLIEST_DATE} to {LATEST_DUE_DATE}")
    return value


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class CustomerRegistered(Data):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] = pii()
    birth_date: Annotated[PlainDate, AfterValidator(_from_1900)] = pii(
        description="From 1900-01-01 to the day of the registration (its occurred_at) in any time zone."
    )
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 -]{3,32}$")] = pii()
    branch_id: ShortText
    relationship_manager: ShortText
    segment: Literal["individual", "business"]

    def check_occurred_at(self, occurred_at: dt.datetime) -> None:
        """No one registers before being born (the date may be the registration's local day anywhere)."""
        latest = (occurred_at + _EASTERNMOST).date() if occurred_at.year < dt.MAXYEAR else dt.date.max
        if self.birth_date > latest:
            raise ValueError(
                f"data.birth_date: {self.birth_date} is after the registration "
                f"(occurred_at {occurred_at:%Y-%m-%dT%H:%M:%SZ})"
            )


class CustomerProfileUpdated(Data):
    risk_preference: Literal["conservative", "balanced", "aggressive"] | None = None
    occupation: Text | None = None
    income_band: ShortText | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 -]{3,32}$")] | None = pii(default=None)
    relationship_manager: ShortText | None = None
    key_person: Annotated[bool, Field(strict=True)] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> CustomerProfileUpdated:
        if not self.model_fields_set:
            raise ValueError("a profile update must change at least one field")
        return self


class DepositMade(Data):
    account_id: ShortText
    amount: Money = Field(gt=0)
    product: Literal["demand", "time"]
    term_months: Literal[3, 6, 12, 24, 36, 60] | None = None

    @model_validator(mode="after")
    def _term_matches_product(self) -> DepositMade:
        if self.product == "time" and self.term_months is None:
            raise ValueError("term_months is required for a time deposit")
        if self.product == "demand" and self.term_months is not None:
            raise ValueError("term_months must be absent for a demand deposit")
        return self


class WithdrawalMade(Data):
    account_id: ShortText
    amount: Money = Field(gt=0)


class VisitRecorded(Data):
    channel: Literal["branch", "home_visit", "phone", "wechat", "sms", "email", "event"]
    purpose: Text
    notes: LongText | None = None


class GreetingSent(Data):
    occasion: Literal["birthday", "festival", "anniversary"]
    channel: ShortText
    gift: Text | None = None


class ComplaintFiled(Data):
    complaint_id: ShortText
    category: ShortText
    severity: Literal["low", "medium", "high"]
    description: LongText


class ComplaintResolved(Data):
    complaint_id: ShortText
    resolution: LongText
    satisfied: Annotated[bool, Field(strict=True)]


class ReferralMade(Data):
    referred_customer_id: CustomerId


class ReferralQualified(Data):
    referred_customer_id: CustomerId
    referral_event_id: UUID


class SurveyCompleted(Data):
    score: Annotated[int, Field(ge=1, le=5, strict=True)]
    comment: LongText | None = None


class FollowupScheduled(Data):
    followup_id: ShortText
    due_date: Annotated[PlainDate, AfterValidator(_due_range)] = Field(
        description=f"From {EARLIEST_DATE} to {LATEST_DUE_DATE}."
    )
    reason: Text


class FollowupCompleted(Data):
    followup_id: ShortText
    outcome: Text


class PointsRedeemed(Data):
    points: Points
    reward: Text


class CorrectionRecorded(Data):
    voids_event_id: UUID
    reason: Text


class CustomerErased(Data):
    reason: Text


DATA_MODELS: dict[str, type[Data]] = {
    "customer.registered": CustomerRegistered,
    "customer.profile_updated": CustomerProfileUpdated,
    "deposit.made": DepositMade,
    "withdrawal.made": WithdrawalMade,
    "visit.recorded": VisitRecorded,
    "greeting.sent": GreetingSent,
    "complaint.filed": ComplaintFiled,
    "complaint.resolved": ComplaintResolved,
    "referral.made": ReferralMade,
    "referral.qualified": ReferralQualified,
    "survey.completed": SurveyCompleted,
    "followup.scheduled": FollowupScheduled,
    "followup.completed": FollowupCompleted,
    "points.redeemed": PointsRedeemed,
    "correction.recorded": CorrectionRecorded,
    "customer.erased": CustomerErased,
}

EVENT_TYPES: tuple[str, ...] = tuple(DATA_MODELS)
ENGINE_ONLY_TYPES = frozenset({"referral.qualified"})


def _pii_fields(model: type[Data]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("x-pii")
    )


PII_FIELDS: dict[str, frozenset[str]] = {t: _pii_fields(m) for t, m in DATA_MODELS.items()}


class Envelope(BaseModel):
    """Fields every event carries; ``recorded_at`` is the engine's, never input."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    event_id: UUID | None = None
    schema_version: Annotated[int, Field(ge=1, strict=True)] = SCHEMA_VERSION
    customer_id: CustomerId
    occurred_at: AwareDatetime = Field(
        description="ISO 8601 with an offset; from 1900-01-01T00:00:00Z to the time of recording plus a tolerance."
    )
    source: ShortText | None = None
    actor: ShortText | None = None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _timestamp_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("occurred_at must be an ISO 8601 timestamp with an offset")
        return value

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _to_utc(cls, value: dt.datetime) -> dt.datetime:
        if value < EARLIEST_INSTANT:
            raise ValueError("must be on or after 1900-01-01T00:00:00Z")
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:  # past year 9999 in UTC
            raise ValueError("must not be after the time of recording") from None


def _data_fits_occurred_at(self: Any) -> Any:
    self.data.check_occurred_at(self.occurred_at)
    return self


def _envelope_class(event_type: str, data_model: type[Data]) -> type[Envelope]:
    class_name = data_model.__name__ + "Event"
    namespace: dict[str, Any] = {
        "__annotations__": {"type": Literal[event_type], "data": data_model},  # type: ignore[valid-type]
        "__module__": __name__,
        "__doc__": f"A `{event_type}` event.",
    }
    if hasattr(data_model, "check_occurred_at"):  # only where data depends on the instant: no cost elsewhere
        namespace["_data_fits_occurred_at"] = model_validator(mode="after")(_data_fits_occurred_at)
    return type(class_name, (Envelope,), namespace)


EVENT_MODELS: dict[str, type[Envelope]] = {t: _envelope_class(t, m) for t, m in DATA_MODELS.items()}

AnyEvent = Annotated[
    Union[tuple(EVENT_MODELS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="type"),
]
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent, config=ConfigDict(defer_build=True))
"""Built on its first validation, as the models are (``defer_build``): a command that validates no event (state,
explain, history) does not pay for building the validators of every event type when it starts."""


@functools.cache
def _validate() -> Callable[[Any], Any]:
    """The union's validating function, the adapter built on the first call."""
    return _EVENT_ADAPTER.validator.validate_python


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each failing field, for stderr and reject reports."""
    parts = []
    for err in exc.errors(include_url=False):
        path = err["loc"][1:] if err["loc"] and err["loc"][0] in EVENT_MODELS else err["loc"]
        loc = ".".join(str(p) for p in path)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown event type {err['input'].get('type')!r}"
            loc = "type"
        elif err["type"] == "union_tag_not_found":
            msg = "missing event type"
            loc = "type"
        elif err["type"] == "timezone_aware":
            msg = "timestamp must carry an offset (naive timestamps are rejected)"
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_event(obj: Any) -> Envelope:
    """Validate one decoded JSON object into its event model, or raise RejectedEvent."""
    if not isinstance(obj, dict):
        raise RejectedEvent("an event must be a JSON object")
    if "recorded_at" in obj:
        raise RejectedEvent("recorded_at is set by the engine and must not be sent")
    try:
        return _validate()(upcast(obj))
    except ValidationError as exc:
        raise RejectedEvent(describe_validation_error(exc)) from None
