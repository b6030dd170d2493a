"""The notification API's bodies."""

from __future__ import annotations

from marshmallow import Schema, fields

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
    status = fields.String(metadata={"description": "`pending` until the SMTP server accepts "
                                                    "the email, then `sent`"})
    sent_at = UtcDateTime(allow_none=True)
    attempts = fields.Integer(metadata={"description": "SMTP attempts so far"})
    last_error = fields.String(allow_none=True, metadata={
        "description": "why the last attempt failed, while the email is pending"})
