"""The enrollment saga's transitions."""

from __future__ import annotations

import pytest

from services.enrollment.domain import next_state


@pytest.mark.parametrize(("state", "happened", "after"), [
    ("pending_payment", "payment.succeeded", "active"),
    ("pending_payment", "payment.failed", "cancelled"),
    ("active", "cancel", "cancelling"),
    ("cancelling", "payment.refunded", "cancelled"),
    ("pending_payment", "cancel", None),
    ("cancelled", "cancel", None),
    ("cancelling", "cancel", None),
    ("active", "payment.succeeded", None),
])
def test_transitions(state: str, happened: str, after: str | None) -> None:
    assert next_state(state, happened) == after
