"""Exponential backoff with full jitter, capped, as the consumer runtime retries."""

from __future__ import annotations

import pytest

from shared.backoff import Backoff
from shared.consumer_config import ConsumerConfig
from shared.settings import Settings
from shared.topology import TOPOLOGY, QueueSpec


def worst_case() -> Backoff:
    """The services' backoff with default settings and the jitter at its maximum."""
    settings = Settings.from_env({})
    return Backoff(settings.backoff_base, settings.backoff_cap, jitter=lambda: 1.0)


def test_the_ceiling_doubles() -> None:
    backoff = Backoff(base=2, cap=1000)
    assert [backoff.ceiling(n) for n in range(1, 6)] == [2, 4, 8, 16, 32]


def test_the_ceiling_stops_at_the_cap() -> None:
    backoff = Backoff(base=2, cap=20)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [2, 4, 8, 16, 20, 20, 20]


def test_a_huge_attempt_number_is_still_capped() -> None:
    assert Backoff(base=2, cap=120).ceiling(10_000) == 120


@pytest.mark.parametrize(("jitter", "attempt", "delay"), [
    (0.25, 3, 2.0), (0.0, 5, 0.0), (1.0, 4, 16.0), (0.5, 10, 10.0),
])
def test_the_delay_is_the_jitter_share_of_the_ceiling(jitter: float, attempt: int,
                                                      delay: float) -> None:
    assert Backoff(base=2, cap=20, jitter=lambda: jitter).delay(attempt) == delay


def test_the_default_jitter_stays_under_the_ceiling() -> None:
    backoff = Backoff(base=2, cap=120)
    assert all(0 <= backoff.delay(3) <= 8 for _ in range(200))


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().ceiling(attempt)
    with pytest.raises(ValueError, match="from 1"):
        Backoff().delay(attempt)


def test_default_settings_back_off_from_two_seconds() -> None:
    assert worst_case().delay(1) == 2.0


def test_the_delays_of_receives_one_to_four_sum_under_a_minute() -> None:
    assert sum(worst_case().delay(n) for n in range(1, 5)) < 60


@pytest.mark.parametrize("queue", TOPOLOGY.queues, ids=lambda q: q.name)
def test_an_always_failing_message_reaches_its_dlq_within_a_minute(queue: QueueSpec) -> None:
    """Every wait the consumer sets between the attempts of its budget, with jitter at its
    maximum: after the last failed attempt it dead-letters the message itself, at once."""
    config = ConsumerConfig(queue.name, "url", "dlq", queue.visibility_timeout,
                            backoff=worst_case(), max_attempts=queue.max_receive_count)
    waits = sum(config.retry_delay(n) for n in range(1, queue.max_receive_count))
    assert waits < 60, waits
