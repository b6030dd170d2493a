"""Sending, receiving and waiting on real queues, for the tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from shared.envelope import Envelope

T = TypeVar("T")


def ping(group: str, n: int, **behaviour: Any) -> Envelope:
    return Envelope(event_type="probe.ping", event_version=1, producer="probe",
                    data={"group": group, "n": n, **behaviour})


def send(sqs: Any, url: str, envelope: Envelope, body: str | None = None) -> None:
    params: dict[str, Any] = {"QueueUrl": url, "MessageBody": body or envelope.body(),
                              "MessageAttributes": envelope.attributes()}
    if url.endswith(".fifo"):
        params |= {"MessageGroupId": envelope.data.get("group", "g"),
                   "MessageDeduplicationId": f"{envelope.event_id}-{time.monotonic_ns()}"}
    sqs.send_message(**params)


def receive_all(sqs: Any, url: str, expected: int, timeout: float = 20) -> list[dict[str, Any]]:
    """Receive and delete until `expected` messages arrived (or the deadline passes)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    MessageAttributeNames=["All"],
                                    MessageSystemAttributeNames=["All"])
        for message in reply.get("Messages", []):
            got.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


def depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_for(check: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
