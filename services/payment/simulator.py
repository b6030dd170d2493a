"""The simulated gateway's switch (served only with SCHOOL_SIMULATOR_CONTROLS=1)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.payment.schemas import GatewaySwitches
from shared.access import ANY, allow
from shared.runtime import Runtime
from shared.service import Simulator


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("simulator", __name__, url_prefix="/simulator",
                    description="Controls of the simulated gateway (tests and the demo)")

    @blp.route("/gateway", methods=["GET"])
    @allow(admin=ANY)
    @blp.response(200, GatewaySwitches)
    def get_switches() -> Any:
        return {"outage": rt.resources.outage()}

    @blp.route("/gateway", methods=["PUT"])
    @allow(admin=ANY, errors=(422,))
    @blp.arguments(GatewaySwitches())
    @blp.response(200, GatewaySwitches)
    def put_switches(body: dict[str, bool]) -> Any:
        rt.resources.set_outage(body["outage"])
        return body

    return [blp]


SIMULATOR = Simulator(routes)
