"""What the notification API does: read a student's notifications, inside the caller's
session."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.notification.tables import contacts, notifications


def list_notifications(session: Session, student_id: str) -> list[Any]:
    """A student's notifications, oldest first; `to` is known once their contact arrived."""
    n = notifications.c
    statement = (select(notifications, func.coalesce(n.recipient, contacts.c.email).label("to"))
                 .outerjoin(contacts, contacts.c.student_id == n.student_id)
                 .where(n.student_id == student_id)
                 .order_by(n.created_at, n.id))
    return [row._mapping for row in session.execute(statement)]
