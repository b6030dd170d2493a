"""The payment API's bodies."""

from __future__ import annotations

from marshmallow import Schema, fields

from shared.schemas import Ref


class PaymentOut(Schema):
    id = fields.String()
    enrollment_id = fields.String()
    student_id = fields.String()
    amount_cents = fields.Integer()
    currency = fields.String()
    status = fields.String()
    failure_reason = fields.String(allow_none=True)
    gateway_attempts = fields.Integer()


class PaymentQuery(Schema):
    enrollment_id = Ref()


class GatewaySwitches(Schema):
    outage = fields.Boolean(required=True, metadata={
        "description": "while true, payments with tok_down fail transiently"})
