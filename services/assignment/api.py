"""The assignment HTTP API (DESIGN section 7): parse, call a command, respond."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_smorest import Blueprint
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.assignment import commands, schemas
from services.assignment.tables import grader_faults, idempotency_keys, submissions
from shared.idempotency import OPENAPI_PARAMETER, IdempotencyKeys, run_idempotent
from shared.web import Problem, current_runtime

blp = Blueprint("assignment", __name__, description="Assignments and submissions")
simulator = Blueprint("grader-simulator", __name__, url_prefix="/simulator",
                      description="Fault injection into grading (tests and the demo)")


@blp.route("/assignments", methods=["POST"])
@blp.arguments(schemas.AssignmentIn())
@blp.response(201, schemas.AssignmentOut)
def post_assignment(body: dict[str, Any]) -> Any:
    rt = current_runtime()
    with rt.writer.begin() as session:
        return commands.create_assignment(session, rt.producer, g.correlation_id, **body)


@blp.route("/assignments/<id:assignment_id>")
@blp.response(200, schemas.AssignmentOut)
def get_assignment(assignment_id: str) -> Any:
    with current_runtime().sessions() as session:
        return commands.get_assignment(session, assignment_id)


@blp.route("/assignments/<id:assignment_id>/submissions", methods=["POST"])
@blp.arguments(schemas.SubmissionIn())
@blp.response(202, schemas.SubmissionAccepted)
@blp.doc(parameters=[OPENAPI_PARAMETER])
def post_submission(body: dict[str, Any], assignment_id: str) -> Any:
    rt, keys = current_runtime(), IdempotencyKeys(idempotency_keys)
    key = keys.check(request.headers.get("Idempotency-Key"))

    def work(session: Session) -> dict[str, Any]:
        return commands.submit(session, rt.producer, g.correlation_id, assignment_id, **body)

    try:
        return run_idempotent(rt.writer, keys, key,
                              f"POST /assignments/{assignment_id}/submissions", body, 202, work)
    except IntegrityError:
        raise Problem(409, "Another submission by this student was stored at the same moment; "
                           "send it again.") from None


@blp.route("/assignments/<id:assignment_id>/submissions")
@blp.arguments(schemas.SubmissionQuery(), location="query")
@blp.response(200, schemas.SubmissionOut(many=True))
def list_submissions(query: dict[str, str], assignment_id: str) -> Any:
    with current_runtime().sessions() as session:
        commands.get_assignment(session, assignment_id)
        statement = select(submissions).where(submissions.c.assignment_id == assignment_id)
        if "student_id" in query:
            statement = statement.where(submissions.c.student_id == query["student_id"])
        return session.execute(statement.order_by(submissions.c.student_id,
                                                  submissions.c.version)).all()


@simulator.route("/grader", methods=["PUT"])
@simulator.arguments(schemas.GraderFaults())
@simulator.response(200, schemas.GraderFaults)
def put_faults(body: dict[str, list[str]]) -> Any:
    with current_runtime().writer.begin() as session:
        session.execute(delete(grader_faults))
        if body["student_ids"]:
            session.execute(insert(grader_faults), [{"student_id": s} for s in
                                                    sorted(set(body["student_ids"]))])
    return body
