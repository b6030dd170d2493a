"""The enrollment API's request and response bodies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.enrollment.tables import courses, enrollments, students
from shared.schemas import Name, Ref, RowOut, Subject, Text


class StudentIn(Schema):
    name = Name()
    email = fields.Email(required=True, validate=validate.Length(max=320))
    id = Subject(required=False, metadata={
        "description": "an admin's choice: the person's subject at the identity provider; a "
                       "student's id is always their own subject"})


class StudentOut(RowOut):
    class Meta(RowOut.Meta):
        table = students


class CourseIn(Schema):
    title = Name()
    price_cents = fields.Integer(required=True, strict=True,
                                 validate=validate.Range(min=0, max=100_000_000))
    # Length as well as the pattern: re's $ also matches before a final newline ("USD\n").
    currency = Text(load_default="USD", validate=[validate.Length(equal=3), validate.Regexp(
        r"^[A-Z]{3}$", error="must be an ISO 4217 code such as USD")])
    capacity = fields.Integer(required=True, strict=True,
                              validate=validate.Range(min=1, max=100_000))


class CourseOut(RowOut):
    class Meta(RowOut.Meta):
        table = courses


class EnrollmentIn(Schema):
    student_id = Ref()
    course_id = Ref()
    payment_token = Text(required=True, validate=validate.Length(min=1, max=64))


class EnrollmentAccepted(Schema):
    id = fields.String()
    status = fields.String()


class EnrollmentOut(RowOut):
    class Meta(RowOut.Meta):
        table = enrollments
        exclude = ("amount_cents", "currency")  # the price it was requested at is in CourseOut


class EnrollmentQuery(Schema):
    student_id = Ref()
