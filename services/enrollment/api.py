"""The enrollment HTTP API (DESIGN section 7): parse, call a command, respond.

Argument schemas are given as instances: given a class, webargs builds a new schema on every
request (issue 13)."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_smorest import Blueprint
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.enrollment import commands, schemas
from services.enrollment.tables import courses, enrollments, idempotency_keys, students
from shared.errors import Conflict
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys, respond_idempotent
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("enrollment", __name__, description="Students, courses and enrollments")
    keys = IdempotencyKeys(idempotency_keys)

    @blp.route("/students", methods=["POST"])
    @blp.arguments(schemas.StudentIn())
    @blp.response(201, schemas.StudentOut)
    def post_student(body: dict[str, Any]) -> Any:
        with rt.writer.begin() as session:
            return commands.register_student(session, rt.producer, g.correlation_id, **body)

    @blp.route("/students/<id:student_id>")
    @blp.response(200, schemas.StudentOut)
    def get_student(student_id: str) -> Any:
        with rt.sessions() as session:
            return commands.get(session, students, student_id, "student")

    @blp.route("/courses", methods=["POST"])
    @blp.arguments(schemas.CourseIn())
    @blp.response(201, schemas.CourseOut)
    def post_course(body: dict[str, Any]) -> Any:
        with rt.writer.begin() as session:
            return commands.create_course(session, rt.producer, g.correlation_id, **body)

    @blp.route("/courses/<id:course_id>")
    @blp.response(200, schemas.CourseOut)
    def get_course(course_id: str) -> Any:
        with rt.sessions() as session:
            return commands.get(session, courses, course_id, "course")

    @blp.route("/enrollments", methods=["POST"])
    @blp.arguments(schemas.EnrollmentIn())
    @blp.response(202, schemas.EnrollmentAccepted)
    @blp.doc(parameters=[OPENAPI_PARAMETER])
    def post_enrollment(body: dict[str, Any]) -> Any:
        key = keys.check(request.headers.get("Idempotency-Key"))

        def enroll(session: Session) -> dict[str, Any]:
            row = commands.request_enrollment(session, rt.producer, g.correlation_id, **body)
            return {"id": row["id"], "status": row["status"]}

        try:
            return respond_idempotent(rt.writer, keys, key, "POST /enrollments", body, 202, enroll)
        except IntegrityError:
            # a concurrent request for the same student and course committed first
            raise Conflict(f"Student {body['student_id']} already has an enrollment in "
                           f"course {body['course_id']}.") from None

    @blp.route("/enrollments")
    @blp.arguments(schemas.EnrollmentQuery(), location="query")
    @blp.response(200, schemas.EnrollmentOut(many=True))
    def list_enrollments(query: dict[str, str]) -> Any:
        with rt.sessions() as session:
            return commands.list_enrollments(session, query["student_id"])

    @blp.route("/enrollments/<id:enrollment_id>")
    @blp.response(200, schemas.EnrollmentOut)
    def get_enrollment(enrollment_id: str) -> Any:
        with rt.sessions() as session:
            return commands.get(session, enrollments, enrollment_id, "enrollment")

    @blp.route("/enrollments/<id:enrollment_id>/cancel", methods=["POST"])
    @blp.response(202, schemas.EnrollmentAccepted)
    def cancel_enrollment(enrollment_id: str) -> Any:
        with rt.writer.begin() as session:
            return commands.cancel(session, rt.producer, g.correlation_id, enrollment_id)

    return [blp]
