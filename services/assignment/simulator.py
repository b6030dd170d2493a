"""Fault injection into grading (served and applied only with SCHOOL_SIMULATOR_CONTROLS=1): the
grading path itself never looks at the switch."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.assignment import commands, schemas
from shared.access import ANY, allow
from shared.handling import Context, Handler
from shared.runtime import Runtime
from shared.service import Simulator


class InjectedFault(Exception):
    """A transient grading failure injected through /simulator/grader."""


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("grader-simulator", __name__, url_prefix="/simulator",
                    description="Fault injection into grading (tests and the demo)")

    @blp.route("/grader", methods=["PUT"])
    @allow(admin=ANY, errors=(422,))
    @blp.arguments(schemas.GraderFaults())
    @blp.response(200, schemas.GraderFaults)
    def put_faults(body: dict[str, list[str]]) -> Any:
        with rt.writer.begin() as session:
            commands.set_grader_faults(session, body["student_ids"])
        return body

    return [blp]


def failing_for_injected_students(handler: Handler) -> Handler:
    """Fail a submission's grading, transiently, while its student is in the fault list."""
    def handle(ctx: Context) -> None:
        student_id = ctx.event.data["student_id"]
        if commands.grading_fails_for(ctx.session, student_id):
            raise InjectedFault(f"grading is failing for student {student_id}")
        handler(ctx)
    return handle


SIMULATOR = Simulator(routes, around=failing_for_injected_students)
