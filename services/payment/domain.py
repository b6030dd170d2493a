"""The payment service's rules, without I/O: the gateway's idempotency keys, and what a
gateway result makes of a payment."""

from __future__ import annotations

SUCCEEDED, FAILED, REFUNDED = "succeeded", "failed", "refunded"


def charge_key(enrollment_id: str) -> str:
    """The gateway idempotency key of an enrollment's charge: a retried charge is the same one."""
    return f"charge:{enrollment_id}"


def refund_key(enrollment_id: str) -> str:
    return f"refund:{enrollment_id}"


def status_after_charge(succeeded: bool) -> str:
    return SUCCEEDED if succeeded else FAILED
