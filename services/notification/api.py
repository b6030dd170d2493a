"""The notification HTTP API (docs/services/): what was sent to a student, what waits, and
what failed for good (the statuses: sender.py)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.notification import commands
from services.notification.schemas import NotificationOut, NotificationQuery
from shared.access import ANY, SELF, allow
from shared.routes import read
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("notification", __name__, description="Emails sent to students")

    @blp.route("/notifications")
    @allow(student=SELF, admin=ANY, acts_as="student_id", errors=(422,))
    @blp.arguments(NotificationQuery(), location="query")
    @blp.response(200, NotificationOut(many=True))
    def list_notifications(query: dict[str, str]) -> Any:
        """A student's notifications, oldest first, `pending`, `sent` or `failed`; `to` is known
        once their contact arrived."""
        return read(rt, commands.list_notifications, query["student_id"])

    return [blp]
