"""What each service, and the operations console, may do on SQS and SNS, derived from the
topology and the event catalogue.

The task roles of the service stacks and of the console stack are built from this, and the
tests check the synthesized policies against it, so a queue added to the topology changes the
permissions with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import CATALOGUE
from shared.topology import TOPOLOGY, Topology

# A consumer receives, settles and extends its messages; GetQueueUrl resolves the URL at start-up.
CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
           "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
# The consumer runtime dead-letters poison messages itself, with a reason, into the DLQ.
DEAD_LETTER = ("sqs:SendMessage", "sqs:GetQueueUrl")
SEND = ("sqs:SendMessage", "sqs:GetQueueUrl")
# The relay publishes in batches (sns:Publish authorises PublishBatch). It builds the topic's ARN
# from STS GetCallerIdentity, which needs no permission (shared/publisher.py, Publisher.topic_arn),
# so no task role may create topics (a CreateTopic against a missing topic makes an empty one).
PUBLISH = ("sns:Publish",)
# The topic and the queues are encrypted with the messaging stack's KMS key (SSE-KMS). SQS and SNS
# call KMS as the caller: whoever sends or publishes needs a data key, and whoever receives
# needs it decrypted.
KMS_SEND = ("kms:GenerateDataKey", "kms:Decrypt")
KMS_RECEIVE = ("kms:Decrypt",)


@dataclass(frozen=True)
class Access:
    service: str
    consumes: tuple[str, ...]  # logical queue names it receives from
    dead_letters: tuple[str, ...]  # logical DLQ names it sends poison messages to
    sends: tuple[str, ...]  # logical queue names it sends to directly
    publishes: bool  # whether it publishes to the topic

    @property
    def kms(self) -> tuple[str, ...]:
        """The KMS actions on the messaging key that its queue and topic actions need."""
        sending = bool(self.dead_letters or self.sends or self.publishes)
        return KMS_SEND if sending else KMS_RECEIVE if self.consumes else ()


def access(service: str, topology: Topology = TOPOLOGY) -> Access:
    consumed = topology.consumed_by(service)
    produced = CATALOGUE.produced_by(service)
    sends = sorted({q.name for event_type in produced
                    for q in topology.direct_destinations(event_type)})
    return Access(service, tuple(q.name for q in consumed), tuple(q.dlq_name for q in consumed),
                  tuple(sends), bool(produced))


# The operations console reads every queue and DLQ (depth, in flight: attributes; the
# URL from the name), lists a DLQ's messages by receiving them and handing them straight back
# (visibility 0), and redrives them one by one, each sent again to the source queue and then
# deleted from the DLQ. Not with SQS's move task: its calls are SQS's own, outside the VPC
# endpoint that the queue policies require of the task roles, so they would be denied. It
# consumes no queue and publishes nothing.
INSPECT = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")
DLQ_REDRIVE = ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage")
REDRIVE_TO = ("sqs:SendMessage",)
# On AWS the age of a queue's oldest message is a CloudWatch metric (shared/inspect.py).
READ_METRICS = ("cloudwatch:GetMetricStatistics",)


@dataclass(frozen=True)
class ConsoleAccess:
    inspects: tuple[str, ...]  # every queue and DLQ of the topology
    dead_letters: tuple[str, ...]  # the DLQs it lists and redrives from
    redrives_to: tuple[str, ...]  # the main queues, the DLQs' sources

    @property
    def kms(self) -> tuple[str, ...]:
        """Receiving from a DLQ needs Decrypt; sending a redriven message (itself, or by the
        move task in its name) needs a data key."""
        return KMS_SEND if self.redrives_to else KMS_RECEIVE if self.dead_letters else ()


def console_access(topology: Topology = TOPOLOGY) -> ConsoleAccess:
    mains = tuple(q.name for q in topology.queues)
    dlqs = tuple(q.dlq_name for q in topology.queues)
    return ConsoleAccess(inspects=mains + dlqs, dead_letters=dlqs, redrives_to=mains)
