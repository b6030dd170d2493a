"""The assignment HTTP API (DESIGN section 7): parse, call a command, respond."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.assignment import commands, schemas
from services.assignment.tables import idempotency_keys
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys
from shared.routes import idempotent, read, resource
from shared.runtime import Runtime

RACE = "Another submission by this student was stored at the same moment; send it again."


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("assignment", __name__, description="Assignments and submissions")
    keys = IdempotencyKeys(idempotency_keys)
    accepted = schemas.SubmissionAccepted()

    resource(blp, rt, "/assignments", "assignment", schemas.AssignmentIn(), schemas.AssignmentOut,
             commands.create_assignment, commands.get_assignment)

    @blp.route("/assignments/<id:assignment_id>/submissions", methods=["POST"])
    @blp.arguments(schemas.SubmissionIn())
    @blp.response(202, schemas.SubmissionAccepted)
    @blp.doc(parameters=[OPENAPI_PARAMETER])
    def post_submission(body: dict[str, Any], assignment_id: str) -> Any:
        return idempotent(rt, keys, accepted, 202, RACE, commands.submit, assignment_id, **body)

    @blp.route("/assignments/<id:assignment_id>/submissions")
    @blp.arguments(schemas.SubmissionQuery(), location="query")
    @blp.response(200, schemas.SubmissionOut(many=True))
    def list_submissions(query: dict[str, str], assignment_id: str) -> Any:
        return read(rt, commands.list_submissions, assignment_id, query.get("student_id"))

    return [blp]
