"""What each service may do on SQS and SNS, derived from the topology and the event catalogue.

The task roles of the service stacks are built from this, and the tests check the synthesized
policies against it, so a queue added to the topology changes the permissions with it.
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
# so no task role may create topics (issue 14).
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
