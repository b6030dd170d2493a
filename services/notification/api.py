"""The notification HTTP API (DESIGN section 7): what was sent to a student, and what waits."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import func, select

from services.notification.schemas import NotificationOut, NotificationQuery
from services.notification.tables import contacts, notifications
from shared.web import current_runtime

blp = Blueprint("notification", __name__, description="Emails sent to students")


@blp.route("/notifications")
@blp.arguments(NotificationQuery(), location="query")
@blp.response(200, NotificationOut(many=True))
def list_notifications(query: dict[str, str]) -> Any:
    """A student's notifications, oldest first; `to` is known once their contact arrived."""
    n = notifications.c
    statement = (select(notifications, func.coalesce(n.recipient, contacts.c.email).label("to"))
                 .outerjoin(contacts, contacts.c.student_id == n.student_id)
                 .where(n.student_id == query["student_id"])
                 .order_by(n.created_at, n.id))
    with current_runtime().sessions() as session:
        return [row._mapping for row in session.execute(statement)]
