"""The notification worker's handlers: keep the contacts, and record one email per event.

The email itself is sent by the sender (sender.py) once the row is committed, so a slow or
absent SMTP server never holds a message in the queue, and an event whose student has no contact
yet waits in the database (status `pending`) until contact.recorded arrives. The email is
rendered here once, to try the templates: one that cannot render this event is a bug no retry
fixes, so the event is dead-lettered (and redriven once the fix is deployed). A letter the
sender still cannot compose or send ends `failed` after its attempts (sender.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jinja2 import Environment, TemplateError
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from services.notification import domain, mail
from services.notification.tables import contacts, notifications
from shared.envelope import new_id
from shared.handling import Context, PermanentError

log = logging.getLogger(__name__)


def has_contact(session: Session, student_id: str) -> bool:
    return session.execute(select(contacts.c.student_id).where(
        contacts.c.student_id == student_id)).first() is not None


def contact_recorded(ctx: Context) -> None:
    data = ctx.event.data
    if not has_contact(ctx.session, data["student_id"]):
        ctx.session.execute(insert(contacts).values(
            student_id=data["student_id"], name=data["name"], email=data["email"],
            registered_at=datetime.now(UTC)))
    waiting = ctx.session.execute(select(func.count()).select_from(notifications).where(
        notifications.c.student_id == data["student_id"],
        notifications.c.status == "pending")).scalar_one()
    if waiting:
        log.info("contact of student %s arrived: %d waiting email(s) can go", data["student_id"],
                 waiting, extra={"outcome": "contact_arrived"})


def registered(ctx: Context) -> None:
    """A registration names only the student: the contact arrives as contact.recorded (or was
    read from an old student.registered, which carried it), so there is nothing to keep."""


def notify(ctx: Context) -> None:
    """Record the email for this (event, student); the sender delivers it."""
    event, data = ctx.event, ctx.event.data
    now = datetime.now(UTC)
    subject = domain.subject(event.event_type, data)
    templates: Environment = ctx.resources
    try:
        mail.render(templates, event.event_type, data, "Student", subject, "check")
    except TemplateError as exc:
        raise PermanentError(f"the {event.event_type} email cannot be rendered: {exc}") from exc
    ctx.session.execute(insert(notifications).values(
        id=new_id(), event_id=event.event_id, event_type=event.event_type,
        student_id=data["student_id"], correlation_id=event.correlation_id,
        subject=subject, data=data,
        status="pending", attempts=0, next_attempt_at=now, created_at=now))
    if not has_contact(ctx.session, data["student_id"]):
        # Standard queues do not keep order: the contact.recorded message may still be on its
        # way. The row waits; the sender picks it up as soon as the contact exists.
        log.info("no contact yet for student %s: %s email waits for it", data["student_id"],
                 event.event_type, extra={"outcome": "waiting_for_contact"})
