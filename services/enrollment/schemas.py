"""The enrollment API's request and response bodies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.schemas import Name, Ref, Text, UtcDateTime


class StudentIn(Schema):
    name = Name()
    email = fields.Email(required=True, validate=validate.Length(max=320))


class StudentOut(Schema):
    id = fields.String()
    name = fields.String()
    email = fields.String()
    created_at = UtcDateTime()


class CourseIn(Schema):
    title = Name()
    price_cents = fields.Integer(required=True, strict=True,
                                 validate=validate.Range(min=0, max=100_000_000))
    # Length as well as the pattern: re's $ also matches before a final newline ("USD\n").
    currency = Text(load_default="USD", validate=[validate.Length(equal=3), validate.Regexp(
        r"^[A-Z]{3}$", error="must be an ISO 4217 code such as USD")])
    capacity = fields.Integer(required=True, strict=True,
                              validate=validate.Range(min=1, max=100_000))


class CourseOut(Schema):
    id = fields.String()
    title = fields.String()
    price_cents = fields.Integer()
    currency = fields.String()
    capacity = fields.Integer()
    seats_taken = fields.Integer()
    created_at = UtcDateTime()


class EnrollmentIn(Schema):
    student_id = Ref()
    course_id = Ref()
    payment_token = Text(required=True, validate=validate.Length(min=1, max=64))


class EnrollmentAccepted(Schema):
    id = fields.String()
    status = fields.String()


class EnrollmentOut(Schema):
    id = fields.String()
    student_id = fields.String()
    course_id = fields.String()
    status = fields.String()
    cancel_reason = fields.String(allow_none=True)
    refunded = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class EnrollmentQuery(Schema):
    student_id = Ref()
