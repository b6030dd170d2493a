"""What the notification service tells students, and how: rules only, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.topology import TOPOLOGY

# The notification queue (shared.topology) receives what this service needs:
# contact.recorded, sent to it alone, feeds the contacts; student.registered (v1 carried the
# contact, and is read as contact.recorded; v2 carries only the id) asks for nothing more; every
# other event of its filter sends an email.
CONTACT_EVENT = "contact.recorded"
REGISTERED_EVENT = "student.registered"
EMAIL_EVENTS = tuple(event_type for event_type in TOPOLOGY.queue("notifications").filter_events
                     or () if event_type != REGISTERED_EVENT)

# ISO 4217 currencies without minor units; every other currency is shown with two decimals.
_ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                           "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})


def money(cents: int, currency: str) -> str:
    """`4990, "USD"` -> `"49.90 USD"` (amounts travel as integer minor units)."""
    if currency in _ZERO_DECIMAL:
        return f"{cents:,} {currency}"
    return f"{cents / 100:,.2f} {currency}"


def score(value: float) -> str:
    """A score without a pointless `.0`: 8.0 -> "8", 7.2 -> "7.2"."""
    return f"{value:g}"


def subject(event_type: str, data: Mapping[str, Any]) -> str:
    if event_type == "enrollment.confirmed":
        return "Your enrollment is confirmed"
    if event_type == "enrollment.cancelled":
        if data["reason"] == "payment_declined":
            return "Your enrollment was cancelled: the payment was declined"
        return "Your enrollment was cancelled"
    if event_type == "payment.refunded":
        return f"Your refund of {money(data['amount_cents'], data['currency'])}"
    if event_type == "submission.graded":
        flag = " (flagged for review)" if data["flagged"] else ""
        return (f"Your submission was graded: {score(data['score'])}/{data['max_score']}"
                f"{flag}")
    raise ValueError(f"{event_type} does not send an email")
