"""Response bodies that are rows take their fields from the tables (shared.schemas.RowOut): a
column added to a table appears in the body, with its type and nullability, without a second
declaration."""

from __future__ import annotations

from datetime import datetime

from marshmallow import fields
from sqlalchemy import Column, Integer, MetaData, String, Table

from services.assignment.schemas import AssignmentOut, SubmissionOut
from services.assignment.tables import assignments, submissions
from services.enrollment.schemas import CourseOut, EnrollmentOut, StudentOut
from services.enrollment.tables import courses, enrollments, students
from services.payment.schemas import PaymentOut
from services.payment.tables import payments
from shared.schemas import RowOut, UtcDateTime
from shared.tables import key, timestamp


def test_each_body_is_its_tables_columns_less_what_it_leaves_out() -> None:
    cases = [(StudentOut, students, set()), (CourseOut, courses, set()),
             (EnrollmentOut, enrollments, {"amount_cents", "currency"}),
             (AssignmentOut, assignments, set()),
             (SubmissionOut, submissions, {"assignment_id", "content", "received_at"}),
             (PaymentOut, payments, {"created_at", "updated_at"})]
    for schema, table, left_out in cases:
        columns = {c.name for c in table.columns} - left_out
        assert set(schema().fields) - {"gateway_attempts"} == columns, schema.__name__


def test_a_new_column_appears_with_its_type_and_nullability() -> None:
    things = Table("things", MetaData(), key(), Column("size", Integer, nullable=False),
                   Column("note", String(10), nullable=True), timestamp("seen_at"))

    class ThingOut(RowOut):
        class Meta(RowOut.Meta):
            table = things
    schema = ThingOut()
    assert isinstance(schema.fields["size"], fields.Integer)
    assert schema.fields["note"].allow_none and not schema.fields["size"].allow_none
    assert isinstance(schema.fields["seen_at"], UtcDateTime)
    # SQLite hands back naive datetimes, which are UTC: the body says so with a Z.
    body = schema.dump({"id": "t1", "size": 3, "note": None, "seen_at": datetime(2026, 1, 2)})
    assert body == {"id": "t1", "size": 3, "note": None, "seen_at": "2026-01-02T00:00:00.000Z"}
    assert list(body) == ["id", "size", "note", "seen_at"]  # the table's order


def test_the_openapi_document_marks_the_columns_that_are_never_null_as_required() -> None:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec("school", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("EnrollmentOut", schema=EnrollmentOut)
    body = spec.to_dict()["components"]["schemas"]["EnrollmentOut"]
    assert "cancel_reason" not in body["required"] and "status" in body["required"]
    assert body["properties"]["cancel_reason"]["nullable"] is True
