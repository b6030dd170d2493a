"""The messaging topology: the one place where queue and topic names and attributes live.

Local provisioning, the AWS stacks, IAM policies, `school status` and the tests all read this
module (DESIGN section 3). Physical names are `<SCHOOL_ENV>-<name>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DLQ_RETENTION_SECONDS = 14 * 24 * 3600
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
LONG_POLL_SECONDS = 20


@dataclass(frozen=True)
class TopicSpec:
    name: str


@dataclass(frozen=True)
class QueueSpec:
    """One queue, its dead-letter queue, who consumes it and what reaches it.

    `events` go straight to the queue (FIFO, via the producer's outbox); `subscribed` queues
    receive from the topic instead, filtered on `event_type` when `filter_events` is set.
    """

    name: str
    consumer: str
    max_receive_count: int
    visibility_timeout: int
    events: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    subscribed: bool = False
    filter_events: tuple[str, ...] | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")

    @property
    def dlq_name(self) -> str:
        """`<name>-dlq`, or `<name-without-.fifo>-dlq.fifo` for a FIFO queue."""
        if self.fifo:
            return self.name.removesuffix(".fifo") + "-dlq.fifo"
        return self.name + "-dlq"

    def group_id(self, data: Mapping[str, Any]) -> str | None:
        """The message group of an event's data, e.g. `<assignment_id>:<student_id>`."""
        if not self.fifo:
            return None
        return ":".join(str(data[key]) for key in self.group_by)


@dataclass(frozen=True)
class Topology:
    topic: TopicSpec
    queues: tuple[QueueSpec, ...]

    def queue(self, name: str) -> QueueSpec:
        for spec in self.queues:
            if name in (spec.name, spec.dlq_name):
                return spec
        known = ", ".join(q.name for q in self.queues)
        raise KeyError(f"unknown queue {name!r}; known queues: {known}")

    def consumed_by(self, service: str) -> tuple[QueueSpec, ...]:
        return tuple(q for q in self.queues if q.consumer == service)

    def direct_destinations(self, event_type: str) -> tuple[QueueSpec, ...]:
        """Queues an event is sent to directly, besides the topic."""
        return tuple(q for q in self.queues if event_type in q.events)


NOTIFYING_EVENTS = (
    "student.registered",
    "enrollment.confirmed",
    "enrollment.cancelled",
    "payment.refunded",
    "submission.graded",
)

TOPOLOGY = Topology(
    topic=TopicSpec("school-events"),
    queues=(
        QueueSpec("notifications", "notification", 5, 30, subscribed=True,
                  filter_events=NOTIFYING_EVENTS),
        QueueSpec("analytics", "analytics", 5, 30, subscribed=True),
        QueueSpec("payment-requests.fifo", "payment", 3, 60,
                  events=("enrollment.requested", "refund.requested"), group_by=("student_id",)),
        QueueSpec("enrollment-payment-results.fifo", "enrollment", 5, 60,
                  events=("payment.succeeded", "payment.failed", "payment.refunded"),
                  group_by=("enrollment_id",)),
        QueueSpec("assignment-submissions.fifo", "assignment", 5, 300,
                  events=("submission.received",), group_by=("assignment_id", "student_id")),
    ),
)


def physical(env: str, name: str) -> str:
    """The physical name of a queue or topic in an environment: `<env>-<name>`."""
    return f"{env}-{name}"
