"""A tap: a queue of the run's own, subscribed to the topic, that captures real event bodies and
attributes so the duplicate-delivery faults can send them again exactly as they were."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.provision import topic_send_policy
from shared.topology import physical

log = logging.getLogger(__name__)
KEEP = 60  # the newest bodies kept per event type


@dataclass(frozen=True)
class Captured:
    body: str
    attributes: dict[str, Any]  # SQS MessageAttributes as received

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Tap:
    sqs: Any
    sns: Any
    env: str
    topic_arn: str
    url: str = ""
    subscription: str = ""
    seen: int = 0
    _kept: dict[str, deque[Captured]] = field(default_factory=lambda: defaultdict(
        lambda: deque(maxlen=KEEP)))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self) -> None:
        self.url = self.sqs.create_queue(QueueName=physical(self.env, "chaos-tap"))["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.sqs.set_queue_attributes(QueueUrl=self.url, Attributes={
            "Policy": json.dumps(topic_send_policy(arn, self.topic_arn))})
        self.subscription = self.sns.subscribe(
            TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True,
        )["SubscriptionArn"]

    def run(self, stop: threading.Event) -> None:
        """Drain the tap until `stop`; errors (LocalStack frozen) are waited out."""
        while not stop.is_set():
            try:
                self._drain_once()
            except (BotoCoreError, ClientError) as exc:
                log.debug("tap: %s", exc)
                stop.wait(1)

    def _drain_once(self) -> None:
        reply = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                         WaitTimeSeconds=1, MessageAttributeNames=["All"])
        messages = reply.get("Messages", [])
        for m in messages:
            captured = Captured(m["Body"], m.get("MessageAttributes", {}))
            kind = captured.attributes.get("event_type", {}).get("StringValue", "?")
            with self._lock:
                self._kept[kind].append(captured)
                self.seen += 1
        for start in range(0, len(messages), 10):
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages[start:start + 10])])

    def sample(self, rng: random.Random, k: int, types: tuple[str, ...] | None = None
               ) -> list[Captured]:
        with self._lock:
            pool = [c for kind, kept in sorted(self._kept.items()) for c in kept
                    if types is None or kind in types]
        return rng.sample(pool, min(k, len(pool)))

    def remove(self) -> None:
        self.sns.unsubscribe(SubscriptionArn=self.subscription)
        self.sqs.delete_queue(QueueUrl=self.url)
