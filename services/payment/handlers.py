"""The payment worker's handlers: charge on charge.requested (or an old enrollment.requested
that still carries its token), refund on refund.requested.
The gateway is the service's resource (ctx.resources, built once per process)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from services.payment import domain
from services.payment.gateway import Gateway
from services.payment.tables import payments
from shared.envelope import new_id
from shared.handling import Context, PermanentError

log = logging.getLogger(__name__)


def charge_requested(ctx: Context) -> None:
    gateway: Gateway = ctx.resources
    data = ctx.event.data
    existing = ctx.session.execute(select(payments.c.id).where(
        payments.c.enrollment_id == data["enrollment_id"])).first()
    if existing is not None:  # another request for the same enrollment already charged it
        log.warning("enrollment %s already has payment %s", data["enrollment_id"],
                    existing.id, extra={"outcome": "ignored"})
        return
    # A GatewayUnavailable propagates: the message is retried with backoff, then DLQ'd.
    result = gateway.charge(domain.charge_key(data["enrollment_id"]), data["payment_token"],
                            data["amount_cents"])
    now = datetime.now(UTC)
    row = {"id": new_id(), "enrollment_id": data["enrollment_id"],
           "student_id": data["student_id"], "amount_cents": data["amount_cents"],
           "currency": data["currency"], "created_at": now, "updated_at": now,
           "status": domain.status_after_charge(result.succeeded),
           "failure_reason": result.reason}
    ctx.session.execute(insert(payments).values(row))
    common = {"payment_id": row["id"], "enrollment_id": row["enrollment_id"],
              "student_id": row["student_id"]}
    if result.succeeded:
        ctx.emit("payment.succeeded", common | {"amount_cents": row["amount_cents"],
                                                "currency": row["currency"]})
    else:
        ctx.emit("payment.failed", common | {"reason": result.reason or "declined"})


def refund_requested(ctx: Context) -> None:
    gateway: Gateway = ctx.resources
    data = ctx.event.data
    row = ctx.session.execute(select(payments).where(
        payments.c.enrollment_id == data["enrollment_id"],
        payments.c.status == domain.SUCCEEDED).with_for_update()).first()
    if row is None:
        raise PermanentError(f"no succeeded payment for enrollment {data['enrollment_id']}")
    gateway.refund(domain.refund_key(row.enrollment_id), row.amount_cents)
    ctx.session.execute(update(payments).where(payments.c.id == row.id).values(
        status=domain.REFUNDED, updated_at=datetime.now(UTC)))
    ctx.emit("payment.refunded", {
        "payment_id": row.id, "enrollment_id": row.enrollment_id,
        "student_id": row.student_id, "amount_cents": row.amount_cents,
        "currency": row.currency})
