"""What a consumer is configured with: its queue, its DLQ, and its limits. A module of its own so
that the consumer and the settler (shared.settle) both read it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.backoff import Backoff


@dataclass(frozen=True)
class ConsumerConfig:
    queue_name: str  # logical name, written to `source_queue` on dead-lettered copies
    queue_url: str
    dlq_url: str
    visibility_timeout: int
    max_messages: int = 10
    wait_seconds: int = 20
    concurrency: int = 4  # handler threads
    batch_size: int = 10  # messages handled in one transaction, at most
    shutdown_deadline: float = 20.0
    heartbeat_ratio: float = 0.7
    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int = 5  # the retry budget: failed handler attempts, not receives
    window: int = 20  # messages held at once (received, not yet finished): receive-ahead bound
    delete_linger: float = 0.05  # how long a handled message may wait for a fuller delete batch

    def retry_delay(self, failures: int) -> int:
        """Visibility, in whole seconds, before a message that failed `failures` times is tried
        again. With the defaults a message that always fails is dead-lettered after
        2 + 4 + 8 + 16 s at worst for a budget of 5: within a minute."""
        return round(self.backoff.delay(failures))

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")
