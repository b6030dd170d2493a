"""The notification API's bodies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.notification.tables import STATUSES
from shared.schemas import Ref, UtcDateTime


class NotificationQuery(Schema):
    student_id = Ref()


class NotificationOut(Schema):
    id = fields.String()
    event_id = fields.String()
    event_type = fields.String()
    student_id = fields.String()
    correlation_id = fields.String(metadata={
        "description": "the correlation id of the event, as in every log line about it"})
    to = fields.String(allow_none=True, metadata={
        "description": "the student's address; null while their contact has not arrived"})
    subject = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES), metadata={"description": (
        "`pending` until the SMTP server accepts the email, then `sent`; `failed` (final) when "
        "it can never be sent: it cannot be composed or the server refuses it (5xx), after "
        "its attempts. An unreachable server or a 4xx reply keeps it `pending`")})
    sent_at = UtcDateTime(allow_none=True)
    attempts = fields.Integer(metadata={"description": "attempts to send it so far"})
    last_error = fields.String(allow_none=True, metadata={
        "description": "why the last attempt failed (no address in it), while the email is "
                       "pending or once it failed"})
