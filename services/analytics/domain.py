"""What analytics derives from events: rules only, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DUPLICATES = "duplicates_absorbed"  # the counter of deliveries the inbox absorbed


def revenue_change(event_type: str, data: Mapping[str, Any]) -> tuple[str, int] | None:
    """Net revenue per currency: a charge adds its amount, a refund takes it back."""
    if event_type == "payment.succeeded":
        return data["currency"], data["amount_cents"]
    if event_type == "payment.refunded":
        return data["currency"], -data["amount_cents"]
    return None
