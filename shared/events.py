"""The event catalogue: one marshmallow schema per (event_type, version).

Consumers upcast older versions to the newest they know; anything they cannot read is a poison
message. Tests may build their own Catalogue; services use CATALOGUE.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cached_property
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from shared.envelope import DeadLetterReason, Envelope, PoisonMessage
from shared.text import Printable

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

Currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
Cents = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


def _schema(schema_name: str, /, **extra: fields.Field) -> type[Schema]:
    return Schema.from_dict(extra, name=schema_name)


def _ids(*names: str) -> dict[str, fields.Field]:
    return {n: fields.String(required=True, validate=validate.Length(min=1, max=64)) for n in names}


def _name() -> fields.String:
    """A person's name or a title: 1 to 200 characters, no control character (shared.text)."""
    return fields.String(required=True, validate=[validate.Length(min=1, max=200), Printable()])


def without(*names: str) -> Upcaster:
    """An upcaster that drops fields a newer version no longer carries."""
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k not in names}
    return upcast


@dataclass(frozen=True)
class EventKind:
    event_type: str
    version: int
    schema: type[Schema]
    producer: str

    @cached_property
    def loader(self) -> Schema:
        """One instance per kind: building a marshmallow schema costs more than loading with
        it, and load() keeps no state between calls, so threads may share it."""
        return self.schema()


class Catalogue:
    """Known (event_type, version) pairs, their producers and the upcasters between versions."""

    def __init__(self) -> None:
        self._kinds: dict[tuple[str, int], EventKind] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._carried: dict[str, tuple[int, str]] = {}

    def register(self, event_type: str, version: int, schema: type[Schema], producer: str) -> None:
        self._kinds[(event_type, version)] = EventKind(event_type, version, schema, producer)

    def upcaster(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        self._upcasters[(event_type, from_version)] = fn

    def carried(self, event_type: str, upto: int, successor: str) -> None:
        """Versions up to `upto` of `event_type` carried what `successor` carries now, field for
        field: a consumer that handles `successor` reads such an old message as its successor
        (what was split off an event, still in a queue or a DLQ), and any other consumer reads
        it as `event_type`, upcast without what was split off."""
        self._carried[event_type] = (upto, successor)

    def kinds(self) -> tuple[EventKind, ...]:
        """Every (event_type, version) known, by type and version."""
        return tuple(sorted(self._kinds.values(), key=lambda k: (k.event_type, k.version)))

    def upcasts(self, event_type: str, version: int) -> bool:
        """Whether `version` of `event_type` is upcast to the next one."""
        return (event_type, version) in self._upcasters

    def successor(self, event_type: str, version: int) -> str | None:
        """The type whose data `version` of `event_type` carried (`carried`), if any."""
        upto, successor = self._carried.get(event_type, (0, ""))
        return successor if version <= upto else None

    def latest(self, event_type: str) -> int:
        versions = [v for (t, v) in self._kinds if t == event_type]
        if not versions:
            raise KeyError(f"unknown event type {event_type!r}")
        return max(versions)

    def event_types(self) -> tuple[str, ...]:
        return tuple(sorted({t for (t, _) in self._kinds}))

    def produced_by(self, service: str) -> tuple[str, ...]:
        return tuple(sorted({k.event_type for k in self._kinds.values() if k.producer == service}))

    def validate(self, event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Return the data loaded by its schema, or raise ValidationError / KeyError."""
        kind = self._kinds[(event_type, version)]
        loaded: dict[str, Any] = kind.loader.load(data)
        return loaded

    def new(self, event_type: str, data: dict[str, Any], **envelope: Any) -> Envelope:
        """An envelope of the newest version, its data checked against the schema."""
        version = self.latest(event_type)
        self.validate(event_type, version, data)
        producer = self._kinds[(event_type, version)].producer
        return Envelope(event_type=event_type, event_version=version, data=data,
                        producer=producer, **envelope)

    def read(self, body: str, handled: Collection[str] | None = None) -> Envelope:
        """Parse, validate and upcast a message body; raise PoisonMessage if it can't be read.

        Given the event types a consumer `handled`, an old message that carried what a handled
        type carries now (`carried`) is read as that type."""
        env = Envelope.parse(body)
        if handled is not None and env.event_type in self._carried:
            upto, successor = self._carried[env.event_type]
            if successor in handled and env.event_version <= upto:
                old = self._upcast(env, upto)
                return self._upcast(replace(old, event_type=successor, event_version=1),
                                    self.latest(successor))
        return self._upcast(env, None)

    def _upcast(self, env: Envelope, upto: int | None) -> Envelope:
        """`env` validated and upcast to version `upto`, or to the newest known."""
        try:
            latest = self.latest(env.event_type)
        except KeyError:
            raise PoisonMessage(DeadLetterReason.UNKNOWN_EVENT_TYPE,
                                f"no schema for {env.event_type!r}") from None
        if env.event_version > latest:
            raise PoisonMessage(
                DeadLetterReason.UNSUPPORTED_VERSION,
                f"{env.event_type} v{env.event_version} is newer than v{latest}, the newest known",
            )
        if (env.event_type, env.event_version) not in self._kinds:
            raise PoisonMessage(DeadLetterReason.UNSUPPORTED_VERSION,
                                f"{env.event_type} v{env.event_version}")
        latest = latest if upto is None else upto
        try:
            data = self.validate(env.event_type, env.event_version, env.data)
            for version in range(env.event_version, latest):
                data = self._upcasters[(env.event_type, version)](data)
                data = self.validate(env.event_type, version + 1, data)
        except ValidationError as exc:
            raise PoisonMessage(DeadLetterReason.INVALID_DATA,
                                json.dumps(exc.messages, default=str)) from None
        return replace(env, event_version=latest, data=_plain(data))


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Loaded data back to JSON types (Decimals and datetimes as strings)."""
    return json.loads(json.dumps(data, default=str))


def price_to_cents(data: dict[str, Any]) -> dict[str, Any]:
    """enrollment.requested v1 -> v2: a USD decimal price becomes amount_cents and currency."""
    upcast = {k: v for k, v in data.items() if k != "price"}
    upcast["amount_cents"] = int(Decimal(str(data["price"])) * 100)
    upcast["currency"] = "USD"
    return upcast


PRICE = re.compile(r"^\d{1,10}(\.\d{1,2})?$")


def _price(value: str) -> bool:
    """A plain decimal of at most 10 digits and 2 places: no exponent, sign or separators."""
    return isinstance(value, str) and PRICE.fullmatch(value) is not None


class _PriceValidator(validate.Validator):
    error = "must be a non-negative decimal string with at most 2 places, e.g. '49.90'"

    def __call__(self, value: str) -> str:
        if not _price(value):
            raise ValidationError(self.error)
        return value


def _catalogue() -> Catalogue:
    cat = Catalogue()
    reg = cat.register
    # Personal data and payment tokens travel only where they must: the
    # topic's events carry ids, and what one consumer alone needs goes to its queue only, as
    # a private message (shared.topology): a contact to notification, a charge to payment.
    # The versions before the split carried both; `carried` reads them in the queue they reach.
    contact = {"name": _name(), "email": fields.Email(required=True)}
    reg("student.registered", 1, _schema("StudentRegisteredV1", **_ids("student_id"),
        **contact), "enrollment")
    reg("student.registered", 2, _schema("StudentRegisteredV2", **_ids("student_id")),
        "enrollment")
    cat.upcaster("student.registered", 1, without("name", "email"))
    reg("contact.recorded", 1, _schema("ContactRecordedV1", **_ids("student_id"), **contact),
        "enrollment")
    cat.carried("student.registered", 1, "contact.recorded")
    reg("course.created", 1, _schema("CourseCreatedV1", **_ids("course_id"),
        title=_name(),
        price_cents=Cents, currency=Currency,
        capacity=fields.Integer(required=True, strict=True, validate=validate.Range(min=1))),
        "enrollment")
    reg("enrollment.requested", 1, _schema("EnrollmentRequestedV1",
        **_ids("enrollment_id", "student_id", "course_id", "payment_token"),
        price=fields.String(required=True, validate=_PriceValidator())), "enrollment")
    reg("enrollment.requested", 2, _schema("EnrollmentRequestedV2",
        **_ids("enrollment_id", "student_id", "course_id", "payment_token"),
        amount_cents=Cents, currency=Currency), "enrollment")
    reg("enrollment.requested", 3, _schema("EnrollmentRequestedV3",
        **_ids("enrollment_id", "student_id", "course_id"), amount_cents=Cents,
        currency=Currency), "enrollment")
    cat.upcaster("enrollment.requested", 1, price_to_cents)
    cat.upcaster("enrollment.requested", 2, without("payment_token"))
    reg("charge.requested", 1, _schema("ChargeRequestedV1",
        **_ids("enrollment_id", "student_id", "course_id", "payment_token"),
        amount_cents=Cents, currency=Currency), "enrollment")
    cat.carried("enrollment.requested", 2, "charge.requested")
    reg("enrollment.confirmed", 1, _schema("EnrollmentConfirmedV1",
        **_ids("enrollment_id", "student_id", "course_id")), "enrollment")
    reg("enrollment.cancelled", 1, _schema("EnrollmentCancelledV1",
        **_ids("enrollment_id", "student_id", "course_id"),
        reason=fields.String(required=True,
                             validate=validate.OneOf(["payment_declined", "student_request"])),
        refunded=fields.Boolean(required=True, truthy={True}, falsy={False})), "enrollment")
    reg("refund.requested", 1, _schema("RefundRequestedV1",
        **_ids("enrollment_id", "student_id"), amount_cents=Cents, currency=Currency),
        "enrollment")
    money: dict[str, fields.Field] = {"amount_cents": Cents, "currency": Currency}
    reg("payment.succeeded", 1, _schema("PaymentSucceededV1",
        **_ids("payment_id", "enrollment_id", "student_id"), **money), "payment")
    reg("payment.failed", 1, _schema("PaymentFailedV1",
        **_ids("payment_id", "enrollment_id", "student_id"),
        reason=fields.String(required=True, validate=validate.Length(min=1, max=200))),
        "payment")
    reg("payment.refunded", 1, _schema("PaymentRefundedV1",
        **_ids("payment_id", "enrollment_id", "student_id"), **money), "payment")
    reg("assignment.created", 1, _schema("AssignmentCreatedV1", **_ids("assignment_id",
        "course_id"), title=_name(),
        max_score=fields.Integer(required=True, strict=True, validate=validate.Range(min=1)),
        due_at=fields.AwareDateTime(load_default=None, allow_none=True, format="iso")),
        "assignment")
    reg("submission.received", 1, _schema("SubmissionReceivedV1",
        **_ids("submission_id", "assignment_id", "student_id"),
        version=fields.Integer(required=True, strict=True, validate=validate.Range(min=1)),
        content=fields.String(required=True)), "assignment")
    reg("submission.graded", 1, _schema("SubmissionGradedV1",
        **_ids("submission_id", "assignment_id", "student_id"),
        version=fields.Integer(required=True, strict=True, validate=validate.Range(min=1)),
        score=fields.Float(required=True, validate=validate.Range(min=0)),
        max_score=fields.Integer(required=True, strict=True, validate=validate.Range(min=1)),
        plagiarism_score=fields.Float(required=True, validate=validate.Range(min=0, max=1)),
        flagged=fields.Boolean(required=True, truthy={True}, falsy={False})), "assignment")
    return cat


CATALOGUE = _catalogue()
