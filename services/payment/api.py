"""The payment HTTP API (docs/services/): parse, call a command, respond."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.payment import commands
from services.payment.schemas import PaymentOut, PaymentQuery
from shared.access import ANY, SELF, allow, current
from shared.routes import read
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("payment", __name__, description="Payments")

    @blp.route("/payments")
    @allow(student=SELF, admin=ANY, errors=(422,))
    @blp.arguments(PaymentQuery(), location="query")
    @blp.response(200, PaymentOut(many=True))
    def list_payments(query: dict[str, str]) -> Any:
        """An enrollment's payments (a student sees only their own)."""
        return read(rt, commands.list_payments, rt.resources, query["enrollment_id"],
                    current().own)

    @blp.route("/payments/<id:payment_id>")
    @allow(student=SELF, admin=ANY, errors=(404,))
    @blp.response(200, PaymentOut)
    def get_payment(payment_id: str) -> Any:
        return read(rt, commands.get_payment, rt.resources, payment_id, current().own)

    return [blp]
