"""What the enrollment API does, one function per request, inside the caller's transaction. A
refusal is a domain error (shared.errors), which the web layer turns into problem+json."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Update, bindparam, exists, insert, select, update
from sqlalchemy.orm import Session

from services.enrollment import domain
from services.enrollment.domain import HOLDING
from services.enrollment.tables import courses, enrollments, students
from shared.envelope import new_id
from shared.errors import Conflict, NotFound
from shared.handling import Emitter


def register_student(session: Session, producer: Emitter, correlation_id: str,
                     name: str, email: str, student_id: str | None = None) -> dict[str, Any]:
    """A new student; `student_id` is the person's subject when they have signed in (a new id
    otherwise). Registering a subject twice is a conflict."""
    row = {"id": student_id or new_id(), "name": name, "email": email,
           "created_at": datetime.now(UTC)}
    if session.execute(select(students.c.id).where(students.c.id == row["id"])).first():
        raise Conflict(f"Student {row['id']} is already registered.")
    session.execute(insert(students).values(row))
    # The topic learns that a student registered; only notification learns the contact.
    producer.emit(session, "student.registered", {"student_id": row["id"]},
                  correlation_id=correlation_id)
    producer.emit(session, "contact.recorded", {"student_id": row["id"], "name": name,
                                                "email": email}, correlation_id=correlation_id)
    return row


def create_course(session: Session, producer: Emitter, correlation_id: str,
                  **fields: Any) -> dict[str, Any]:
    row = {"id": new_id(), "seats_taken": 0, "created_at": datetime.now(UTC), **fields}
    session.execute(insert(courses).values(row))
    producer.emit(session, "course.created", {
        "course_id": row["id"], "title": row["title"], "price_cents": row["price_cents"],
        "currency": row["currency"], "capacity": row["capacity"]}, correlation_id=correlation_id)
    return row


def _getter(table: Any, what: str, owner_column: str | None = None
            ) -> Callable[..., Any]:
    """A query of one record by id; given an `owner`, a record of another student is not
    found either (its existence is not revealed)."""
    def get(session: Session, record_id: str, owner: str | None = None) -> Any:
        row = session.execute(select(table).where(table.c.id == record_id)).first()
        if row is None or (owner is not None and owner_column is not None
                           and getattr(row, owner_column) != owner):
            raise NotFound(f"No {what} with id {record_id!r}.")
        return row
    return get


get_student = _getter(students, "student", "id")
get_course = _getter(courses, "course")
get_enrollment = _getter(enrollments, "enrollment", "student_id")


def list_enrollments(session: Session, student_id: str) -> list[Any]:
    """A student's enrollments, oldest first."""
    return list(session.execute(select(enrollments).where(
        enrollments.c.student_id == student_id).order_by(enrollments.c.created_at)).all())


# Saga step 1 in one statement: take a seat if the student exists, the course has a free seat and
# the student holds none in it yet. The common case then costs three statements (this, the
# enrollment, its outbox rows) instead of six; a refusal is explained by `_explain_refusal`.
# The partial unique index uq_enrollments_holding still decides between concurrent requests.
_TAKE_SEAT = (update(courses).where(
    courses.c.id == bindparam("course_id"), courses.c.seats_taken < courses.c.capacity,
    exists().where(students.c.id == bindparam("student_id")),
    ~exists().where(enrollments.c.student_id == bindparam("student_id"),
                    enrollments.c.course_id == bindparam("course_id"),
                    enrollments.c.status.in_(HOLDING)),
).values(seats_taken=courses.c.seats_taken + 1)
    .returning(courses.c.price_cents, courses.c.currency))
_INSERT_ENROLLMENT = insert(enrollments)


def request_enrollment(session: Session, producer: Emitter, correlation_id: str,
                       student_id: str, course_id: str, payment_token: str) -> dict[str, Any]:
    """Hold a seat and ask for payment (saga step 1)."""
    course = session.execute(_TAKE_SEAT, {"student_id": student_id,
                                          "course_id": course_id}).first()
    if course is None:
        course = _explain_refusal(session, student_id, course_id)
    now = datetime.now(UTC)
    row = {"id": new_id(), "student_id": student_id, "course_id": course_id,
           "status": domain.PENDING, "cancel_reason": None, "refunded": False,
           "amount_cents": course.price_cents, "currency": course.currency,
           "created_at": now, "updated_at": now}
    session.execute(_INSERT_ENROLLMENT, row)
    # The event tells everyone; the charge, which alone carries the token, goes to payment only.
    request = {"enrollment_id": row["id"], "student_id": student_id, "course_id": course_id,
               "amount_cents": course.price_cents, "currency": course.currency}
    producer.emit(session, "enrollment.requested", request, correlation_id=correlation_id)
    producer.emit(session, "charge.requested", request | {"payment_token": payment_token},
                  correlation_id=correlation_id)
    return row


def _updated(session: Session, statement: Update) -> int:
    """The rows an UPDATE matched. Session.execute is typed as returning a Result, but for a
    DML statement it is a CursorResult, which alone has `rowcount`."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _explain_refusal(session: Session, student_id: str, course_id: str) -> Any:
    """The checks of `_TAKE_SEAT` one by one, to raise the problem that applies. On PostgreSQL a
    concurrent commit may have changed the answer since, so when every check passes the seat is
    taken here, by the same guarded update as before: the request then goes on."""
    get_student(session, student_id)
    course = get_course(session, course_id)
    holding = session.execute(select(enrollments.c.id).where(
        enrollments.c.student_id == student_id, enrollments.c.course_id == course_id,
        enrollments.c.status.in_(HOLDING))).first()
    if holding is not None:
        raise Conflict(f"Student {student_id} already has enrollment {holding.id} in "
                           f"course {course_id}.")
    # One statement checks and takes the seat, so concurrent requests cannot oversell.
    held = _updated(session, update(courses).where(
        courses.c.id == course_id, courses.c.seats_taken < courses.c.capacity
    ).values(seats_taken=courses.c.seats_taken + 1))
    if held != 1:
        raise Conflict(f"Course {course_id} is full ({course.capacity} seats).")
    return course


def cancel(session: Session, producer: Emitter, correlation_id: str,
           enrollment_id: str, owner: str | None = None) -> dict[str, Any]:
    """Start a refund of an active enrollment (saga, cancellation); given an `owner`, only
    one of theirs."""
    row = get_enrollment(session, enrollment_id, owner)
    state = domain.next_state(row.status, "cancel")
    changed = _updated(session, update(enrollments).where(
        enrollments.c.id == enrollment_id, enrollments.c.status == row.status
    ).values(status=state, updated_at=datetime.now(UTC))) if state else None
    if changed is None or changed != 1:
        raise Conflict(f"Enrollment {enrollment_id} is {row.status}; only an active "
                           "enrollment can be cancelled.")
    producer.emit(session, "refund.requested", {
        "enrollment_id": enrollment_id, "student_id": row.student_id,
        "amount_cents": row.amount_cents, "currency": row.currency},
        correlation_id=correlation_id)
    return {"id": enrollment_id, "status": state}
