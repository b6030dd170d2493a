"""The enrollment saga's states and the transitions events and requests may make (no I/O)."""

from __future__ import annotations

PENDING, ACTIVE, CANCELLING, CANCELLED = "pending_payment", "active", "cancelling", "cancelled"
HOLDING = (PENDING, ACTIVE, CANCELLING)  # the states that hold a seat in the course
PAYMENT_DECLINED, STUDENT_REQUEST = "payment_declined", "student_request"

# (state, what happened) -> next state. Anything else is not a valid move from that state.
TRANSITIONS = {
    (PENDING, "payment.succeeded"): ACTIVE,
    (PENDING, "payment.failed"): CANCELLED,
    (ACTIVE, "cancel"): CANCELLING,
    (CANCELLING, "payment.refunded"): CANCELLED,
}


def next_state(state: str, happened: str) -> str | None:
    """The state after `happened`, or None when it does not apply in `state`."""
    return TRANSITIONS.get((state, happened))
