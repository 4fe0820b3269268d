"""The event models of RULES.md §1: the one source of truth for every event.

Each event type is an envelope model whose ``type`` is a literal and whose
``data`` is a strict model of its own. JSON Schemas, PII field lists, the
canonical form and validation all derive from these classes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import (
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

from timeline.errors import RejectedEvent
from timeline.money import Money
from timeline.upcasting import upcast

SCHEMA_VERSION = 1

CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
Points = Annotated[int, Field(gt=0, le=100_000_000, strict=True)]


def pii(**kwargs: Any) -> Any:
    """A field holding personal data (RULES §7): encrypted at rest, erasable."""
    return Field(json_schema_extra={"x-pii": True}, **kwargs)


def _date_text(value: Any) -> Any:
    """A date is ``YYYY-MM-DD`` text: not a timestamp, not a number."""
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("must be a date YYYY-MM-DD")
    return value


PlainDate = Annotated[dt.date, BeforeValidator(_date_text)]


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerRegistered(Data):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] = pii()
    birth_date: PlainDate = pii()
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 -]{3,32}$")] = pii()
    branch_id: ShortText
    relationship_manager: ShortText
    segment: Literal["individual", "business"]


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
    due_date: PlainDate
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

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID | None = None
    schema_version: Annotated[int, Field(ge=1, strict=True)] = SCHEMA_VERSION
    customer_id: CustomerId
    occurred_at: AwareDatetime
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
        return value.astimezone(dt.UTC)


def _envelope_class(event_type: str, data_model: type[Data]) -> type[Envelope]:
    class_name = data_model.__name__ + "Event"
    return type(
        class_name,
        (Envelope,),
        {
            "__annotations__": {"type": Literal[event_type], "data": data_model},  # type: ignore[valid-type]
            "__module__": __name__,
            "__doc__": f"A `{event_type}` event.",
        },
    )


EVENT_MODELS: dict[str, type[Envelope]] = {t: _envelope_class(t, m) for t, m in DATA_MODELS.items()}

AnyEvent = Annotated[
    Union[tuple(EVENT_MODELS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="type"),
]
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)
_validate = _EVENT_ADAPTER.validator.validate_python


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
        return _validate(upcast(obj))
    except ValidationError as exc:
        raise RejectedEvent(describe_validation_error(exc)) from None
