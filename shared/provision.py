"""Provision the topology on SQS and SNS, idempotently: a second run changes nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from shared import topology as t
from shared.topology import QueueSpec, Topology, physical

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueRef:
    spec: QueueSpec
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


@dataclass
class Report:
    topic_arn: str = ""
    queues: dict[str, QueueRef] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


# GetQueueUrl's error for a queue that does not exist (botocore's modeled QueueDoesNotExist).
# SQS speaks JSON but keeps its query-protocol codes: on AWS and LocalStack the code reads
# `AWS.SimpleQueueService.NonExistentQueue` and `QueryErrorCode` reads `QueueDoesNotExist`;
# an emulator without the query-compatibility header gives `QueueDoesNotExist` as the code.
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def queue_missing(exc: ClientError) -> bool:
    """Whether SQS refused because the queue does not exist, by the error's code (its message
    is free text, and has changed over the years)."""
    error = exc.response.get("Error", {})
    return bool(MISSING_QUEUE_CODES & {error.get("Code"), error.get("QueryErrorCode")})


def dlq_attributes(spec: QueueSpec) -> dict[str, str]:
    attrs = {"MessageRetentionPeriod": str(t.DLQ_RETENTION_SECONDS), "SqsManagedSseEnabled": "true"}
    return attrs | ({"FifoQueue": "true"} if spec.fifo else {})


def queue_attributes(spec: QueueSpec, dlq_arn: str, topic_arn: str, queue_arn: str
                     ) -> dict[str, str]:
    attrs = {
        "MessageRetentionPeriod": str(t.QUEUE_RETENTION_SECONDS),
        "ReceiveMessageWaitTimeSeconds": str(t.LONG_POLL_SECONDS),
        "VisibilityTimeout": str(spec.visibility_timeout),
        "SqsManagedSseEnabled": "true",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": spec.redrive_max_receives}),
        **spec.sqs_attributes,
    }
    if spec.fifo:
        attrs["FifoQueue"] = "true"
    if spec.subscribed:
        attrs["Policy"] = json.dumps(topic_send_policy(queue_arn, topic_arn))
    return attrs


def redrive_allow_policy(source_arn: str) -> dict[str, Any]:
    """A DLQ admits its own source queue only (AWS's RedriveAllowPolicy, as the CDK sets it)."""
    return {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]}


def topic_send_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Lets the topic, and only the topic, deliver to a subscribed queue."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "topic-delivers", "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }]}


def filter_policy(spec: QueueSpec) -> str | None:
    if spec.filter_events is None:
        return None
    return json.dumps({"event_type": sorted(spec.filter_events)})


def _same(key: str, want: str, have: str | None) -> bool:
    if have is None:
        return False
    if key in ("RedrivePolicy", "RedriveAllowPolicy", "Policy"):
        return _normalise(json.loads(want)) == _normalise(json.loads(have))
    return want == have


def _normalise(value: Any) -> Any:
    """JSON policies compare by content; SQS may echo numbers back as strings."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return str(value)


class Provisioner:
    def __init__(self, sqs: Any, sns: Any, env: str, topology: Topology = t.TOPOLOGY,
                 say: Callable[[str], None] = log.info) -> None:
        self.sqs, self.sns, self.env, self.topology, self.say = sqs, sns, env, topology, say

    def run(self) -> Report:
        report = Report()
        report.topic_arn = self.sns.create_topic(Name=physical(self.env, self.topology.topic.name),
                                                 Attributes={})["TopicArn"]
        for spec in self.topology.queues:
            report.queues[spec.name] = self._queue(spec, report)
            if spec.subscribed:
                self._subscription(spec, report.queues[spec.name], report)
        return report

    def _queue(self, spec: QueueSpec, report: Report) -> QueueRef:
        dlq_url = self._ensure(physical(self.env, spec.dlq_name), dlq_attributes(spec), report)
        dlq_arn = self._arn(dlq_url)
        url = self._ensure(physical(self.env, spec.name), {"FifoQueue": "true"} if spec.fifo
                           else {}, report)
        arn = self._arn(url)
        self._converge(url, queue_attributes(spec, dlq_arn, report.topic_arn, arn), report)
        self._converge(dlq_url, {"RedriveAllowPolicy": json.dumps(redrive_allow_policy(arn))},
                       report)
        return QueueRef(spec, url, arn, dlq_url, dlq_arn)

    def _ensure(self, name: str, attrs: dict[str, str], report: Report) -> str:
        try:
            url: str = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if not queue_missing(exc):
                raise
            url = self.sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
            report.changes.append(f"created queue {name}")
            self.say(f"created queue {name}")
        self._converge(url, attrs, report)
        return url

    def _converge(self, url: str, want: dict[str, str], report: Report) -> None:
        have = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        diff = {k: v for k, v in want.items()
                if k != "FifoQueue" and not _same(k, v, have.get(k))}
        if have.get("KmsMasterKeyId"):
            # Encrypted with a KMS key (as the AWS stacks do): never replaced by SSE-SQS.
            diff.pop("SqsManagedSseEnabled", None)
        if diff:
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes=diff)
            name = url.rsplit("/", 1)[-1]
            report.changes.append(f"set {', '.join(sorted(diff))} on {name}")
            self.say(f"set {', '.join(sorted(diff))} on {name}")

    def _arn(self, url: str) -> str:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        arn: str = attrs["Attributes"]["QueueArn"]
        return arn

    def _subscription(self, spec: QueueSpec, ref: QueueRef, report: Report) -> None:
        want = {"RawMessageDelivery": "true"}
        policy = filter_policy(spec)
        if policy:
            want["FilterPolicy"] = policy
        existing = self._find_subscription(report.topic_arn, ref.arn)
        if existing is None:
            self.sns.subscribe(TopicArn=report.topic_arn, Protocol="sqs", Endpoint=ref.arn,
                               Attributes=want, ReturnSubscriptionArn=True)
            report.changes.append(f"subscribed {spec.name}")
            self.say(f"subscribed {physical(self.env, spec.name)} to the topic")
            return
        have = self.sns.get_subscription_attributes(SubscriptionArn=existing)["Attributes"]
        for key, value in want.items():
            current = have.get(key)
            same = (current is not None and json.loads(current) == json.loads(value)
                    if key == "FilterPolicy" else current == value)
            if not same:
                self.sns.set_subscription_attributes(SubscriptionArn=existing,
                                                     AttributeName=key, AttributeValue=value)
                report.changes.append(f"set {key} on the {spec.name} subscription")
        if not policy and "FilterPolicy" in have:
            self.sns.set_subscription_attributes(SubscriptionArn=existing,
                                                 AttributeName="FilterPolicy", AttributeValue="")
            report.changes.append(f"removed the filter of the {spec.name} subscription")

    def _find_subscription(self, topic_arn: str, queue_arn: str) -> str | None:
        paginator = self.sns.get_paginator("list_subscriptions_by_topic")
        for page in paginator.paginate(TopicArn=topic_arn):
            for sub in page["Subscriptions"]:
                if sub["Endpoint"] == queue_arn and sub["Protocol"] == "sqs":
                    arn: str = sub["SubscriptionArn"]
                    return arn
        return None


def resolve(sqs: Any, env: str, spec: QueueSpec) -> tuple[str, str]:
    """URLs of an already provisioned queue and its DLQ, looked up once at start-up."""
    url = sqs.get_queue_url(QueueName=physical(env, spec.name))["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=physical(env, spec.dlq_name))["QueueUrl"]
    return url, dlq
