"""The assignment HTTP API (DESIGN section 7): parse, call a command, respond."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_smorest import Blueprint
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.assignment import commands, schemas
from services.assignment.tables import idempotency_keys
from shared.errors import Conflict
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys, respond_idempotent
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("assignment", __name__, description="Assignments and submissions")
    keys = IdempotencyKeys(idempotency_keys)

    @blp.route("/assignments", methods=["POST"])
    @blp.arguments(schemas.AssignmentIn())
    @blp.response(201, schemas.AssignmentOut)
    def post_assignment(body: dict[str, Any]) -> Any:
        with rt.writer.begin() as session:
            return commands.create_assignment(session, rt.producer, g.correlation_id, **body)

    @blp.route("/assignments/<id:assignment_id>")
    @blp.response(200, schemas.AssignmentOut)
    def get_assignment(assignment_id: str) -> Any:
        with rt.sessions() as session:
            return commands.get_assignment(session, assignment_id)

    @blp.route("/assignments/<id:assignment_id>/submissions", methods=["POST"])
    @blp.arguments(schemas.SubmissionIn())
    @blp.response(202, schemas.SubmissionAccepted)
    @blp.doc(parameters=[OPENAPI_PARAMETER])
    def post_submission(body: dict[str, Any], assignment_id: str) -> Any:
        key = keys.check(request.headers.get("Idempotency-Key"))

        def work(session: Session) -> dict[str, Any]:
            return commands.submit(session, rt.producer, g.correlation_id, assignment_id, **body)

        try:
            return respond_idempotent(rt.writer, keys, key,
                                  f"POST /assignments/{assignment_id}/submissions", body, 202,
                                  work)
        except IntegrityError:
            raise Conflict("Another submission by this student was stored at the same moment; "
                           "send it again.") from None

    @blp.route("/assignments/<id:assignment_id>/submissions")
    @blp.arguments(schemas.SubmissionQuery(), location="query")
    @blp.response(200, schemas.SubmissionOut(many=True))
    def list_submissions(query: dict[str, str], assignment_id: str) -> Any:
        with rt.sessions() as session:
            return commands.list_submissions(session, assignment_id, query.get("student_id"))

    return [blp]
