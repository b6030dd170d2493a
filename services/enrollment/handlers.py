"""The enrollment worker's handlers: the payment results that move the saga on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update

from services.enrollment import domain
from services.enrollment.tables import courses, enrollments
from shared.handling import Context, PermanentError

log = logging.getLogger(__name__)


def _move(ctx: Context, **changes: object) -> Row[Any] | None:
    """Apply the transition the event makes, or None when it does not apply (logged)."""
    enrollment_id = ctx.event.data["enrollment_id"]
    row = ctx.session.execute(select(enrollments).where(
        enrollments.c.id == enrollment_id).with_for_update()).first()
    if row is None:
        raise PermanentError(f"no enrollment {enrollment_id}")
    state = domain.next_state(row.status, ctx.event.event_type)
    if state is None:
        log.warning("%s ignored: enrollment %s is %s", ctx.event.event_type, enrollment_id,
                    row.status, extra={"outcome": "ignored"})
        return None
    ctx.session.execute(update(enrollments).where(enrollments.c.id == enrollment_id).values(
        status=state, updated_at=datetime.now(UTC), **changes))
    return row


def _release_seat(ctx: Context, course_id: str) -> None:
    ctx.session.execute(update(courses).where(courses.c.id == course_id).values(
        seats_taken=courses.c.seats_taken - 1))


def payment_succeeded(ctx: Context) -> None:
    row = _move(ctx)
    if row is not None:
        ctx.emit("enrollment.confirmed", {"enrollment_id": row.id, "student_id": row.student_id,
                                          "course_id": row.course_id})


def _cancel(ctx: Context, reason: str, refunded: bool) -> None:
    """End the enrollment as cancelled, give its seat back, and say so."""
    row = _move(ctx, cancel_reason=reason, refunded=refunded)
    if row is not None:
        _release_seat(ctx, row.course_id)
        ctx.emit("enrollment.cancelled", {
            "enrollment_id": row.id, "student_id": row.student_id, "course_id": row.course_id,
            "reason": reason, "refunded": refunded})


def payment_failed(ctx: Context) -> None:
    _cancel(ctx, domain.PAYMENT_DECLINED, refunded=False)


def payment_refunded(ctx: Context) -> None:
    _cancel(ctx, domain.STUDENT_REQUEST, refunded=True)
