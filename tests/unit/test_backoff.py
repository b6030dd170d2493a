"""Exponential backoff with full jitter, capped."""

from __future__ import annotations

import pytest

from shared.backoff import Backoff
from shared.topology import TOPOLOGY


def test_the_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(base=2, cap=20)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [2, 4, 8, 16, 20, 20]


def test_the_delay_is_the_jitter_share_of_the_ceiling() -> None:
    assert Backoff(base=2, cap=20, jitter=lambda: 0.25).delay(3) == 2.0
    assert Backoff(base=2, cap=20, jitter=lambda: 0.0).delay(5) == 0.0


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().ceiling(0)


def test_an_always_failing_message_reaches_its_dlq_within_a_minute() -> None:
    """Defaults, jitter at its maximum: the delays before each receive up to maxReceiveCount."""
    worst = Backoff(jitter=lambda: 1.0)
    for queue in TOPOLOGY.queues:
        waits = sum(worst.delay(n) for n in range(1, queue.max_receive_count))
        assert waits < 60, (queue.name, waits)
