"""The assignment API's bodies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.assignment.tables import assignments, submissions
from shared.schemas import Instant, Name, Ref, RowOut, Text

MAX_CONTENT_BYTES = 100 * 1024


class AssignmentIn(Schema):
    course_id = Ref()
    title = Name()
    max_score = fields.Integer(required=True, strict=True,
                               validate=validate.Range(min=1, max=10_000))
    keywords = fields.List(Text(validate=validate.Length(min=1, max=50)),
                           load_default=list, validate=validate.Length(max=50))
    due_at = Instant(load_default=None, allow_none=True)


class AssignmentOut(RowOut):
    class Meta(RowOut.Meta):
        table = assignments

    keywords = fields.List(fields.String())  # a JSON column: its type is ours to say


class SubmissionIn(Schema):
    student_id = Ref()
    content = Text(required=True, validate=validate.Length(min=1))


class SubmissionAccepted(Schema):
    id = fields.String()
    version = fields.Integer()
    status = fields.String()


class SubmissionOut(RowOut):
    class Meta(RowOut.Meta):
        table = submissions
        exclude = ("assignment_id", "content", "received_at")


class SubmissionQuery(Schema):
    student_id = Ref(required=False)


class GraderFaults(Schema):
    student_ids = fields.List(Ref(), required=True, validate=validate.Length(max=1000),
                              metadata={
                                  "description": "grading fails transiently for these students"})
