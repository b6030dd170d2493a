"""The assignment HTTP API (docs/services/): parse, call a command, respond. Instructors
create assignments and see the work handed in to theirs; a student submits and reads only as
themselves, and never sees an assignment's keywords, which are its grading key."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.assignment import commands, schemas
from services.assignment.tables import idempotency_keys
from shared.access import ANY, CREATED, SELF, allow, current
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys
from shared.routes import command, idempotent, read
from shared.runtime import Runtime

RACE = "Another submission by this student was stored at the same moment; send it again."


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("assignment", __name__, description="Assignments and submissions")
    keys = IdempotencyKeys(idempotency_keys)
    accepted = schemas.SubmissionAccepted()

    @blp.route("/assignments", methods=["POST"])
    @allow(instructor=ANY, admin=ANY, errors=(422,))
    @blp.arguments(schemas.AssignmentIn())
    @blp.response(201, schemas.AssignmentOut)
    def post_assignment(body: dict[str, Any]) -> Any:
        return command(rt, commands.create_assignment, created_by=current().actor, **body)

    @blp.route("/assignments/<id:assignment_id>")
    @allow(student=SELF, instructor=CREATED, admin=ANY, errors=(404,))
    @blp.response(200, schemas.AssignmentOut)
    def get_assignment(assignment_id: str) -> Any:
        """An assignment; its keywords only for its creator and admins."""
        row = read(rt, commands.get_assignment, assignment_id)
        who = current()
        if who.reach != ANY and row["created_by"] != who.actor:
            row.pop("keywords")
        return row

    @blp.route("/assignments/<id:assignment_id>/submissions", methods=["POST"])
    @allow(student=SELF, admin=ANY, acts_as="student_id", errors=(404, 409, 413, 422))
    @blp.arguments(schemas.SubmissionIn())
    @blp.response(202, schemas.SubmissionAccepted)
    @blp.doc(parameters=[OPENAPI_PARAMETER])
    def post_submission(body: dict[str, Any], assignment_id: str) -> Any:
        return idempotent(rt, keys, accepted, 202, RACE, commands.submit, assignment_id, **body)

    @blp.route("/assignments/<id:assignment_id>/submissions")
    @allow(student=SELF, instructor=CREATED, admin=ANY, acts_as="student_id",
           errors=(404, 422))
    @blp.arguments(schemas.SubmissionQuery(), location="query")
    @blp.response(200, schemas.SubmissionOut(many=True))
    def list_submissions(query: dict[str, str], assignment_id: str) -> Any:
        """The submissions (a student's own; an instructor's assignment's, all of them)."""
        who = current()
        return read(rt, commands.list_submissions, assignment_id,
                    who.own or query.get("student_id"), who.creator)

    return [blp]
