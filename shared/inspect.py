"""Read queue state without side effects: depth, in flight, and the age of the oldest message."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.settings import Settings


@dataclass(frozen=True)
class Depth:
    """A queue's approximate counts, as SQS gives them (GetQueueAttributes)."""

    visible: int  # ApproximateNumberOfMessages
    in_flight: int  # ...NotVisible: received, not yet deleted or back
    delayed: int  # ...Delayed: sent with a delay still running

    @property
    def held(self) -> int:
        """Messages the queue holds for its consumer: visible and in flight."""
        return self.visible + self.in_flight

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def depth(sqs: Any, url: str) -> Depth:
    """The one reading of a queue's depth, for `school status`, the console, chaos and tests."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return Depth(int(attrs.get("ApproximateNumberOfMessages", 0)),
                 int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                 int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)))


@dataclass(frozen=True)
class QueueState:
    name: str
    visible: int
    in_flight: int
    oldest_age: float | None  # seconds; None when the queue is empty or the age is unknown


def queue_state(sqs: Any, url: str, settings: Settings, cloudwatch: Any = None) -> QueueState:
    counts = depth(sqs, url)
    visible, in_flight = counts.visible, counts.in_flight
    age = None
    if visible + in_flight:
        age = (_localstack_oldest_age(url, settings) if settings.aws_endpoint_url
               else _cloudwatch_oldest_age(cloudwatch, url))
    return QueueState(url.rsplit("/", 1)[-1], visible, in_flight, age)


def _localstack_oldest_age(url: str, settings: Settings) -> float | None:
    """LocalStack's developer endpoint lists every message, in flight too, without receiving it
    (receiving would count towards maxReceiveCount). Not part of the AWS API."""
    messages = localstack_listing(str(settings.aws_endpoint_url), url)
    sent = [int(a["Value"]) for m in messages for a in m.get("Attribute", [])
            if a["Name"] == "SentTimestamp"]
    return time.time() - min(sent) / 1000 if sent else None


def localstack_listing(endpoint: str, url: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Every message of a queue, in flight too, as LocalStack's developer endpoint lists it
    (receiving nothing; not part of the AWS API)."""
    query = urllib.parse.urlencode({"QueueUrl": url, "ShowInvisible": "true"})
    request = urllib.request.Request(f"{endpoint}/_aws/sqs/messages?{query}",
                                     headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result = json.load(response)["ReceiveMessageResponse"]["ReceiveMessageResult"] or {}
    messages = result.get("Message") or []
    return [messages] if isinstance(messages, dict) else list(messages)


def _cloudwatch_oldest_age(cloudwatch: Any, url: str) -> float | None:
    """On AWS the age is a CloudWatch metric (ApproximateAgeOfOldestMessage), one-minute grain."""
    if cloudwatch is None:
        return None
    now = datetime.now(UTC)
    stats = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": url.rsplit("/", 1)[-1]}],
        StartTime=now - timedelta(minutes=5), EndTime=now, Period=60, Statistics=["Maximum"])
    points = sorted(stats["Datapoints"], key=lambda p: p["Timestamp"])
    return float(points[-1]["Maximum"]) if points else None
