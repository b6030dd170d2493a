"""The payment API's bodies."""

from __future__ import annotations

from marshmallow import Schema, fields

from services.payment.tables import payments
from shared.schemas import Ref, RowOut


class PaymentOut(RowOut):
    class Meta(RowOut.Meta):
        table = payments
        exclude = ("created_at", "updated_at")

    gateway_attempts = fields.Integer()  # from the gateway's own table


class PaymentQuery(Schema):
    enrollment_id = Ref()


class GatewaySwitches(Schema):
    outage = fields.Boolean(required=True, metadata={
        "description": "while true, payments with tok_down fail transiently"})
