"""What the payment API does: read payments with the gateway's attempts, inside the caller's
session. A refusal is a domain error (shared.errors)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from services.payment import domain
from services.payment.gateway import Gateway
from services.payment.tables import payments
from shared.errors import NotFound


def _with_attempts(row: Row[Any], gateway: Gateway) -> dict[str, Any]:
    keys = (domain.charge_key(row.enrollment_id), domain.refund_key(row.enrollment_id))
    return dict(row._mapping) | {"gateway_attempts": gateway.attempts(*keys)}


def list_payments(session: Session, gateway: Gateway, enrollment_id: str,
                  owner: str | None = None) -> list[dict[str, Any]]:
    """An enrollment's payments; given an `owner`, only theirs (another student's enrollment
    then has none to show)."""
    statement = select(payments).where(payments.c.enrollment_id == enrollment_id)
    if owner is not None:
        statement = statement.where(payments.c.student_id == owner)
    return [_with_attempts(row, gateway) for row in session.execute(statement).all()]


def get_payment(session: Session, gateway: Gateway, payment_id: str,
                owner: str | None = None) -> dict[str, Any]:
    row = session.execute(select(payments).where(payments.c.id == payment_id)).first()
    if row is None or (owner is not None and row.student_id != owner):
        raise NotFound(f"No payment with id {payment_id!r}.")
    return _with_attempts(row, gateway)
