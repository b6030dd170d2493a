"""The enrollment HTTP API (docs/services/): parse, call a command, respond. Each route
declares who may call it (shared.access): a student acts only as themselves, their student id
being their token's `sub`; an admin acts for anyone.

Argument schemas are given as instances: given a class, webargs builds a new schema on every
request, which costs more than parsing it."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.enrollment import commands, schemas
from services.enrollment.tables import idempotency_keys
from shared.access import ANY, SELF, allow, current, public
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys
from shared.routes import command, idempotent, read, resource
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("enrollment", __name__, description="Students, courses and enrollments")
    keys = IdempotencyKeys(idempotency_keys)
    accepted = schemas.EnrollmentAccepted()

    resource(blp, rt, "/courses", "course", schemas.CourseIn(), schemas.CourseOut,
             commands.create_course, commands.get_course,
             who_creates=allow(instructor=ANY, admin=ANY, errors=(422,)),
             who_reads=public(errors=(404,)))

    @blp.route("/students", methods=["POST"])
    @allow(student=SELF, admin=ANY, acts_as="id", errors=(409, 422))
    @blp.arguments(schemas.StudentIn())
    @blp.response(201, schemas.StudentOut)
    def post_student(body: dict[str, Any]) -> Any:
        """A student registers themselves (their id is their token's subject); an admin
        registers anyone, with their subject as `id` or with an id the server chooses."""
        chosen = body.pop("id", None)  # a student's can only be their own (acts_as)
        student_id = current().own or chosen
        return command(rt, commands.register_student, student_id=student_id,
                       race=f"Student {student_id} is already registered.", **body)

    @blp.route("/students/<id:student_id>")
    @allow(student=SELF, admin=ANY, errors=(404,))
    @blp.response(200, schemas.StudentOut)
    def get_student(student_id: str) -> Any:
        return read(rt, commands.get_student, student_id, current().own)

    @blp.route("/enrollments", methods=["POST"])
    @allow(student=SELF, admin=ANY, acts_as="student_id", errors=(404, 409, 422))
    @blp.arguments(schemas.EnrollmentIn())
    @blp.response(202, schemas.EnrollmentAccepted)
    @blp.doc(parameters=[OPENAPI_PARAMETER])
    def post_enrollment(body: dict[str, Any]) -> Any:
        race = (f"Student {body['student_id']} already has an enrollment in course "
                f"{body['course_id']}.")
        return idempotent(rt, keys, accepted, 202, race, commands.request_enrollment, **body)

    @blp.route("/enrollments")
    @allow(student=SELF, admin=ANY, acts_as="student_id", errors=(422,))
    @blp.arguments(schemas.EnrollmentQuery(), location="query")
    @blp.response(200, schemas.EnrollmentOut(many=True))
    def list_enrollments(query: dict[str, str]) -> Any:
        return read(rt, commands.list_enrollments, query["student_id"])

    @blp.route("/enrollments/<id:enrollment_id>")
    @allow(student=SELF, admin=ANY, errors=(404,))
    @blp.response(200, schemas.EnrollmentOut)
    def get_enrollment(enrollment_id: str) -> Any:
        return read(rt, commands.get_enrollment, enrollment_id, current().own)

    @blp.route("/enrollments/<id:enrollment_id>/cancel", methods=["POST"])
    @allow(student=SELF, admin=ANY, errors=(404, 409))
    @blp.response(202, schemas.EnrollmentAccepted)
    def cancel_enrollment(enrollment_id: str) -> Any:
        return command(rt, commands.cancel, enrollment_id, current().own)

    return [blp]
