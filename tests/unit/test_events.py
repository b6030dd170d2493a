"""The event catalogue: schemas, producers, poison reasons and upcasting."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from shared.envelope import Envelope, PoisonMessage
from shared.events import CATALOGUE

CONTRACT = {  # event type -> (newest version, producer), DESIGN sections 2 and 4
    "student.registered": (1, "enrollment"), "course.created": (1, "enrollment"),
    "enrollment.requested": (2, "enrollment"), "enrollment.confirmed": (1, "enrollment"),
    "enrollment.cancelled": (1, "enrollment"), "refund.requested": (1, "enrollment"),
    "payment.succeeded": (1, "payment"), "payment.failed": (1, "payment"),
    "payment.refunded": (1, "payment"), "assignment.created": (1, "assignment"),
    "submission.received": (1, "assignment"), "submission.graded": (1, "assignment"),
}
REQUESTED_V2 = {"enrollment_id": "e", "student_id": "s", "course_id": "c",
                "amount_cents": 4990, "currency": "USD", "payment_token": "tok_ok"}


def raw(event_type: str, version: int, data: dict[str, object]) -> str:
    return Envelope(event_type, version, data, "enrollment").body()


def test_the_catalogue_is_the_contract() -> None:
    assert set(CATALOGUE.event_types()) == set(CONTRACT)
    for event_type, (version, producer) in CONTRACT.items():
        assert CATALOGUE.latest(event_type) == version
        assert event_type in CATALOGUE.produced_by(producer)


def test_new_emits_the_newest_version_and_validates() -> None:
    event = CATALOGUE.new("enrollment.requested", REQUESTED_V2, correlation_id="c")
    assert (event.event_version, event.producer) == (2, "enrollment")
    with pytest.raises(ValidationError):
        CATALOGUE.new("enrollment.requested", {k: v for k, v in REQUESTED_V2.items()
                                               if k != "currency"})


@pytest.mark.parametrize(("body", "reason"), [
    (raw("nobody.knows", 1, {}), "unknown_event_type"),
    (raw("enrollment.requested", 3, REQUESTED_V2), "unsupported_version"),
    (raw("student.registered", 0, {}), "invalid_envelope"),
    (raw("student.registered", 1, {"student_id": "s", "name": "A", "email": "nope"}),
     "invalid_data"),
    (raw("payment.succeeded", 1, {"payment_id": "p", "enrollment_id": "e", "student_id": "s",
                                  "amount_cents": -1, "currency": "USD"}), "invalid_data"),
    (raw("enrollment.cancelled", 1, {"enrollment_id": "e", "student_id": "s", "course_id": "c",
                                     "reason": "bored", "refunded": False}), "invalid_data"),
])
def test_what_a_consumer_cannot_read_is_poison(body: str, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        CATALOGUE.read(body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("price", "cents"), [("49.90", 4990), ("0", 0), ("12.5", 1250)])
def test_v1_enrollment_requested_is_upcast_to_cents(price: str, cents: int) -> None:
    v1 = {"enrollment_id": "e", "student_id": "s", "course_id": "c", "price": price,
          "payment_token": "tok_ok"}
    event = CATALOGUE.read(raw("enrollment.requested", 1, v1))
    assert event.event_version == 2
    assert event.data == {"enrollment_id": "e", "student_id": "s", "course_id": "c",
                          "payment_token": "tok_ok", "amount_cents": cents, "currency": "USD"}


@pytest.mark.parametrize("price", ["49.999", "ten", "-1", "NaN"])
def test_a_v1_price_that_is_not_money_is_invalid(price: str) -> None:
    v1 = {"enrollment_id": "e", "student_id": "s", "course_id": "c", "price": price,
          "payment_token": "tok_ok"}
    with pytest.raises(PoisonMessage) as caught:
        CATALOGUE.read(raw("enrollment.requested", 1, v1))
    assert caught.value.reason == "invalid_data"


def test_assignment_due_at_is_optional() -> None:
    data = {"assignment_id": "a", "course_id": "c", "title": "Essay", "max_score": 10}
    assert CATALOGUE.read(raw("assignment.created", 1, data)).data["due_at"] is None
    dated = data | {"due_at": "2026-12-01T12:00:00Z"}
    assert json.dumps(CATALOGUE.read(raw("assignment.created", 1, dated)).data["due_at"])
