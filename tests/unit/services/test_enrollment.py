"""The enrollment service's rules through its commands and handlers: seats, the one holding
enrollment, cancellation, and the saga moved on by payment results (in-memory SQLite, fakes)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.enrollment import commands, domain
from services.enrollment.service import SERVICE
from services.enrollment.tables import courses, enrollments
from shared.errors import Conflict, NotFound
from shared.handling import PermanentError
from tests.support.fakes import FakeProducer, event, handle, transaction

CORR = "corr-enrollment"


def student(engine: Engine, producer: FakeProducer, name: str = "Ada") -> str:
    with transaction(engine) as session:
        return str(commands.register_student(session, producer, CORR, name,
                                             f"{name.lower()}@example.com")["id"])


def course(engine: Engine, producer: FakeProducer, capacity: int = 2) -> str:
    with transaction(engine) as session:
        return str(commands.create_course(session, producer, CORR, title="Queues",
                                          price_cents=4990, currency="EUR",
                                          capacity=capacity)["id"])


def enroll(engine: Engine, producer: FakeProducer, student_id: str, course_id: str
           ) -> dict[str, Any]:
    with transaction(engine) as session:
        return commands.request_enrollment(session, producer, CORR, student_id, course_id,
                                           "tok_ok")


def seats(engine: Engine, course_id: str) -> int:
    with transaction(engine) as session:
        return int(session.execute(select(courses.c.seats_taken).where(
            courses.c.id == course_id)).scalar_one())


def enrollment(engine: Engine, enrollment_id: str) -> Any:
    with transaction(engine) as session:
        return session.execute(select(enrollments).where(
            enrollments.c.id == enrollment_id)).one()


def payment_result(event_type: str, row: dict[str, Any]) -> Any:
    data = {"payment_id": "pay-1", "enrollment_id": row["id"], "student_id": row["student_id"]}
    if event_type == "payment.failed":
        data["reason"] = "card_declined"
    else:
        data |= {"amount_cents": row["amount_cents"], "currency": row["currency"]}
    return event(event_type, data, correlation_id=CORR)


def set_status(engine: Engine, enrollment_id: str, status: str) -> None:
    with transaction(engine) as session:
        session.execute(enrollments.update().where(enrollments.c.id == enrollment_id)
                        .values(status=status))


def test_registering_a_student_stores_them_and_emits_student_registered(
        engine: Engine, producer: FakeProducer) -> None:
    student_id = student(engine, producer, "Grace")
    with transaction(engine) as session:
        row = commands.get_student(session, student_id)
    assert (row.name, row.email) == ("Grace", "grace@example.com")
    registered, contact = producer.only("student.registered"), producer.only("contact.recorded")
    assert registered.data == {"student_id": student_id}  # on the topic: the id alone
    assert contact.data == {"student_id": student_id, "name": "Grace",
                            "email": "grace@example.com"}  # to notification only
    assert registered.correlation_id == contact.correlation_id == CORR


def test_creating_a_course_starts_with_no_seat_taken_and_emits_course_created(
        engine: Engine, producer: FakeProducer) -> None:
    course_id = course(engine, producer, capacity=3)
    assert seats(engine, course_id) == 0
    assert producer.only("course.created").data == {
        "course_id": course_id, "title": "Queues", "price_cents": 4990, "currency": "EUR",
        "capacity": 3}


def test_requesting_an_enrollment_takes_a_seat_and_asks_for_payment(
        engine: Engine, producer: FakeProducer) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer)
    row = enroll(engine, producer, student_id, course_id)
    assert seats(engine, course_id) == 1
    stored = enrollment(engine, row["id"])
    assert (stored.status, stored.amount_cents, stored.currency, stored.refunded) == (
        domain.PENDING, 4990, "EUR", False)
    request = {"enrollment_id": row["id"], "student_id": student_id, "course_id": course_id,
               "amount_cents": 4990, "currency": "EUR"}
    assert producer.only("enrollment.requested").data == request  # on the topic: no token
    assert producer.only("charge.requested").data == request | {"payment_token": "tok_ok"}


@pytest.mark.parametrize("unknown", ["student", "course"])
def test_an_unknown_student_or_course_is_not_found(engine: Engine, producer: FakeProducer,
                                                   unknown: str) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer)
    ids = {"student": student_id, "course": course_id} | {unknown: "no-such-id"}
    with pytest.raises(NotFound, match=unknown):
        enroll(engine, producer, ids["student"], ids["course"])
    assert seats(engine, course_id) == 0
    assert "enrollment.requested" not in producer.types


def test_a_full_course_is_a_conflict(engine: Engine, producer: FakeProducer) -> None:
    course_id = course(engine, producer, capacity=1)
    enroll(engine, producer, student(engine, producer, "Ada"), course_id)
    with pytest.raises(Conflict, match="full"):
        enroll(engine, producer, student(engine, producer, "Bob"), course_id)
    assert seats(engine, course_id) == 1
    assert producer.types.count("enrollment.requested") == 1


def test_a_second_holding_enrollment_is_a_conflict(engine: Engine,
                                                   producer: FakeProducer) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer, capacity=5)
    first = enroll(engine, producer, student_id, course_id)
    with pytest.raises(Conflict, match=first["id"]):
        enroll(engine, producer, student_id, course_id)
    assert seats(engine, course_id) == 1


def test_a_cancelled_enrollment_holds_no_seat_so_the_student_may_enroll_again(
        engine: Engine, producer: FakeProducer) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer)
    first = enroll(engine, producer, student_id, course_id)
    handle(SERVICE, engine, payment_result("payment.failed", first), producer)
    second = enroll(engine, producer, student_id, course_id)
    assert second["id"] != first["id"]
    assert seats(engine, course_id) == 1


def test_cancelling_an_active_enrollment_asks_for_a_refund(engine: Engine,
                                                           producer: FakeProducer) -> None:
    row = enroll(engine, producer, student(engine, producer), course(engine, producer))
    set_status(engine, row["id"], domain.ACTIVE)
    with transaction(engine) as session:
        result = commands.cancel(session, producer, CORR, row["id"])
    assert result == {"id": row["id"], "status": domain.CANCELLING}
    assert enrollment(engine, row["id"]).status == domain.CANCELLING
    assert producer.only("refund.requested").data == {
        "enrollment_id": row["id"], "student_id": row["student_id"], "amount_cents": 4990,
        "currency": "EUR"}


@pytest.mark.parametrize("status", [domain.PENDING, domain.CANCELLING, domain.CANCELLED])
def test_only_an_active_enrollment_can_be_cancelled(engine: Engine, producer: FakeProducer,
                                                    status: str) -> None:
    row = enroll(engine, producer, student(engine, producer), course(engine, producer))
    set_status(engine, row["id"], status)
    with pytest.raises(Conflict, match=status), transaction(engine) as session:
        commands.cancel(session, producer, CORR, row["id"])
    assert enrollment(engine, row["id"]).status == status
    assert "refund.requested" not in producer.types


def test_cancelling_an_unknown_enrollment_is_not_found(engine: Engine,
                                                       producer: FakeProducer) -> None:
    with pytest.raises(NotFound), transaction(engine) as session:
        commands.cancel(session, producer, CORR, "no-such-enrollment")


def test_payment_succeeded_confirms_the_enrollment_and_keeps_the_seat(
        engine: Engine, producer: FakeProducer) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer)
    row = enroll(engine, producer, student_id, course_id)
    succeeded = payment_result("payment.succeeded", row)
    handle(SERVICE, engine, succeeded, producer)
    assert enrollment(engine, row["id"]).status == domain.ACTIVE
    assert seats(engine, course_id) == 1
    confirmed = producer.only("enrollment.confirmed")
    assert confirmed.data == {"enrollment_id": row["id"], "student_id": student_id,
                              "course_id": course_id}
    assert (confirmed.correlation_id, confirmed.causation_id) == (CORR, succeeded.event_id)


def test_payment_failed_cancels_the_enrollment_and_releases_the_seat(
        engine: Engine, producer: FakeProducer) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer)
    row = enroll(engine, producer, student_id, course_id)
    handle(SERVICE, engine, payment_result("payment.failed", row), producer)
    stored = enrollment(engine, row["id"])
    assert (stored.status, stored.cancel_reason, stored.refunded) == (
        domain.CANCELLED, domain.PAYMENT_DECLINED, False)
    assert seats(engine, course_id) == 0
    assert producer.only("enrollment.cancelled").data == {
        "enrollment_id": row["id"], "student_id": student_id, "course_id": course_id,
        "reason": "payment_declined", "refunded": False}


def test_payment_refunded_ends_a_cancellation_and_releases_the_seat(
        engine: Engine, producer: FakeProducer) -> None:
    student_id, course_id = student(engine, producer), course(engine, producer)
    row = enroll(engine, producer, student_id, course_id)
    handle(SERVICE, engine, payment_result("payment.succeeded", row), producer)
    with transaction(engine) as session:
        commands.cancel(session, producer, CORR, row["id"])
    handle(SERVICE, engine, payment_result("payment.refunded", row), producer)
    stored = enrollment(engine, row["id"])
    assert (stored.status, stored.cancel_reason, stored.refunded) == (
        domain.CANCELLED, domain.STUDENT_REQUEST, True)
    assert seats(engine, course_id) == 0
    assert producer.types[-2:] == ["refund.requested", "enrollment.cancelled"]
    assert producer.only("enrollment.cancelled").data["refunded"] is True


@pytest.mark.parametrize(("status", "event_type"), [
    (domain.ACTIVE, "payment.succeeded"),  # a redelivered success
    (domain.ACTIVE, "payment.failed"),
    (domain.CANCELLED, "payment.failed"),
    (domain.PENDING, "payment.refunded"),
])
def test_an_event_that_does_not_apply_is_ignored(engine: Engine, producer: FakeProducer,
                                                 status: str, event_type: str) -> None:
    course_id = course(engine, producer)
    row = enroll(engine, producer, student(engine, producer), course_id)
    set_status(engine, row["id"], status)
    emitted = list(producer.types)
    handle(SERVICE, engine, payment_result(event_type, row), producer)
    assert enrollment(engine, row["id"]).status == status
    assert seats(engine, course_id) == 1
    assert producer.types == emitted


def test_a_payment_result_for_an_unknown_enrollment_is_permanent(
        engine: Engine, producer: FakeProducer) -> None:
    ghost = {"id": "no-such-enrollment", "student_id": "s-1", "amount_cents": 1,
             "currency": "EUR"}
    with pytest.raises(PermanentError, match="no-such-enrollment"):
        handle(SERVICE, engine, payment_result("payment.succeeded", ghost), producer)
    assert producer.emitted == []
