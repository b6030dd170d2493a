"""The payment HTTP API (DESIGN section 7), and the simulated gateway's switch."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from sqlalchemy import Row, select

from services.payment.gateway import SimulatedGateway
from services.payment.handlers import charge_key, refund_key
from services.payment.schemas import GatewaySwitches, PaymentOut, PaymentQuery
from services.payment.tables import payments
from shared.runtime import Runtime
from shared.web import Problem, current_runtime

blp = Blueprint("payment", __name__, description="Payments")
simulator = Blueprint("simulator", __name__, url_prefix="/simulator",
                      description="Controls of the simulated gateway (tests and the demo)")


def _deps() -> tuple[Runtime, SimulatedGateway]:
    return current_runtime(), current_app.extensions["gateway"]


def _with_attempts(row: Row[Any], gateway: SimulatedGateway) -> dict[str, Any]:
    keys = (charge_key(row.enrollment_id), refund_key(row.enrollment_id))
    return dict(row._mapping) | {"gateway_attempts": gateway.attempts(*keys)}


@blp.route("/payments")
@blp.arguments(PaymentQuery(), location="query")
@blp.response(200, PaymentOut(many=True))
def list_payments(query: dict[str, str]) -> Any:
    runtime, gateway = _deps()
    with runtime.sessions() as session:
        rows = session.execute(select(payments).where(
            payments.c.enrollment_id == query["enrollment_id"])).all()
    return [_with_attempts(row, gateway) for row in rows]


@blp.route("/payments/<id:payment_id>")
@blp.response(200, PaymentOut)
def get_payment(payment_id: str) -> Any:
    runtime, gateway = _deps()
    with runtime.sessions() as session:
        row = session.execute(select(payments).where(payments.c.id == payment_id)).first()
    if row is None:
        raise Problem(404, f"No payment with id {payment_id!r}.")
    return _with_attempts(row, gateway)


@simulator.route("/gateway", methods=["GET"])
@simulator.response(200, GatewaySwitches)
def get_switches() -> Any:
    return {"outage": _deps()[1].outage()}


@simulator.route("/gateway", methods=["PUT"])
@simulator.arguments(GatewaySwitches())
@simulator.response(200, GatewaySwitches)
def put_switches(body: dict[str, bool]) -> Any:
    _deps()[1].set_outage(body["outage"])
    return body
