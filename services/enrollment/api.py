"""The enrollment HTTP API (DESIGN section 7): parse, call a command, respond.

Argument schemas are given as instances: given a class, webargs builds a new schema on every
request (issue 13)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.enrollment import commands, schemas
from services.enrollment.tables import idempotency_keys
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys
from shared.routes import command, idempotent, read, resource
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("enrollment", __name__, description="Students, courses and enrollments")
    keys = IdempotencyKeys(idempotency_keys)
    accepted = schemas.EnrollmentAccepted()

    resource(blp, rt, "/students", "student", schemas.StudentIn(), schemas.StudentOut,
             commands.register_student, commands.get_student)
    resource(blp, rt, "/courses", "course", schemas.CourseIn(), schemas.CourseOut,
             commands.create_course, commands.get_course)

    @blp.route("/enrollments", methods=["POST"])
    @blp.arguments(schemas.EnrollmentIn())
    @blp.response(202, schemas.EnrollmentAccepted)
    @blp.doc(parameters=[OPENAPI_PARAMETER])
    def post_enrollment(body: dict[str, Any]) -> Any:
        race = (f"Student {body['student_id']} already has an enrollment in course "
                f"{body['course_id']}.")
        return idempotent(rt, keys, accepted, 202, race, commands.request_enrollment, **body)

    @blp.route("/enrollments")
    @blp.arguments(schemas.EnrollmentQuery(), location="query")
    @blp.response(200, schemas.EnrollmentOut(many=True))
    def list_enrollments(query: dict[str, str]) -> Any:
        return read(rt, commands.list_enrollments, query["student_id"])

    @blp.route("/enrollments/<id:enrollment_id>")
    @blp.response(200, schemas.EnrollmentOut)
    def get_enrollment(enrollment_id: str) -> Any:
        return read(rt, commands.get_enrollment, enrollment_id)

    @blp.route("/enrollments/<id:enrollment_id>/cancel", methods=["POST"])
    @blp.response(202, schemas.EnrollmentAccepted)
    def cancel_enrollment(enrollment_id: str) -> Any:
        return command(rt, commands.cancel, enrollment_id)

    return [blp]
