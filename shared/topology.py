"""The messaging topology: the one place where queue and topic names and attributes live.

Local provisioning, the AWS stacks, IAM policies, `school status` and the tests all read this
module. Physical names are `<SCHOOL_ENV>-<name>`.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DLQ_RETENTION_SECONDS = 14 * 24 * 3600
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
LONG_POLL_SECONDS = 20
# High-throughput FIFO (SQS developer guide, "High throughput for FIFO queues"): deduplication
# and the throughput quota apply per message group, so the groups of a queue scale together.
# Every event id is one group's, so deduplicating per group changes nothing else.
HIGH_THROUGHPUT_FIFO = {"DeduplicationScope": "messageGroup",
                        "FifoThroughputLimit": "perMessageGroupId"}
# A queue's RedrivePolicy maxReceiveCount is only a safety net: the consumer
# counts handler attempts against the spec's `max_receive_count` and dead-letters the message
# itself. Receives also grow when a message is handed back untried (held behind a failed message
# of its FIFO group, released at shutdown), so the net sits far above any budget. It still
# catches a message that never reaches a handler, such as one that crashes its worker each time.
SAFETY_MAX_RECEIVES = 50

# MessageGroupId and MessageDeduplicationId: at most 128 characters of a-z, A-Z, 0-9 and
# punctuation (SQS API reference, SendMessage). Anything else is refused for ever.
_GROUP_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)
MAX_GROUP_ID = 128


def safe_group_id(raw: str) -> str:
    """`raw` when SQS accepts it as a MessageGroupId, else a stable valid stand-in.

    Invalid characters are percent-encoded (so `Jane Doe` becomes `Jane%20Doe`) and an overlong
    value keeps a prefix and its SHA-256. The mapping is a function of `raw` alone, so the same
    student always lands in the same group; two raw values sharing a stand-in only share a group,
    which orders them more strictly and never less.
    """
    if 0 < len(raw) <= MAX_GROUP_ID and all(c in _GROUP_CHARS for c in raw):
        return raw
    encoded = "".join(c if c in _GROUP_CHARS and c != "%" else
                      "".join(f"%{b:02X}" for b in c.encode()) for c in raw) or "%00"
    if len(encoded) <= MAX_GROUP_ID:
        return encoded
    digest = hashlib.sha256(raw.encode()).hexdigest()
    return f"{encoded[:MAX_GROUP_ID - len(digest) - 1]}~{digest}"


@dataclass(frozen=True)
class TopicSpec:
    name: str


@dataclass(frozen=True)
class QueueSpec:
    """One queue, its dead-letter queue, who consumes it and what reaches it.

    `events` go straight to the queue (FIFO, via the producer's outbox) as well as to the topic;
    `private` ones go to this queue alone and are never published, because they carry what
    only this consumer may see (a payment token, a contact's address). `subscribed` queues
    receive from the topic, filtered on `event_type` when `filter_events` is set.
    """

    name: str
    consumer: str
    max_receive_count: int  # the retry budget: handler attempts, not receives
    visibility_timeout: int
    events: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    subscribed: bool = False
    filter_events: tuple[str, ...] | None = None
    private: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")

    @property
    def sqs_attributes(self) -> dict[str, str]:
        """The queue's further SQS attributes: a FIFO queue is high-throughput, its
        limit per message group rather than per queue, and `attributes` may add or override."""
        return (HIGH_THROUGHPUT_FIFO if self.fifo else {}) | dict(self.attributes)

    @property
    def sent_here(self) -> tuple[str, ...]:
        """The event types sent to this queue directly: its `events` and its `private` ones."""
        return self.events + self.private

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
        return safe_group_id(":".join(str(data[key]) for key in self.group_by))

    @property
    def redrive_max_receives(self) -> int:
        """The RedrivePolicy's maxReceiveCount: the safety net above the retry budget."""
        return max(SAFETY_MAX_RECEIVES, self.max_receive_count)


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
        """Queues an event is sent to directly, besides the topic or instead of it."""
        return tuple(q for q in self.queues if event_type in q.sent_here)

    def published(self, event_type: str) -> bool:
        """Whether an event goes on the topic: every event does but the private ones."""
        return not any(event_type in q.private for q in self.queues)

    def on_topic(self, event_types: Iterable[str]) -> tuple[str, ...]:
        """Those of `event_types` that are published on the topic."""
        return tuple(t for t in event_types if self.published(t))


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
                  filter_events=NOTIFYING_EVENTS, private=("contact.recorded",)),
        QueueSpec("analytics", "analytics", 5, 30, subscribed=True),
        QueueSpec("payment-requests.fifo", "payment", 3, 60,
                  events=("refund.requested",), private=("charge.requested",),
                  group_by=("student_id",)),
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
