"""Sending, receiving and waiting on real queues, for the tests."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from deploy.local.wait import until
from shared import inspect
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

    def arrived() -> bool:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    MessageAttributeNames=["All"],
                                    MessageSystemAttributeNames=["All"])
        for message in reply.get("Messages", []):
            got.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(got) >= expected

    with contextlib.suppress(TimeoutError):  # what arrived by then: the test says if too few
        until(arrived, timeout, f"{expected} messages", every=0)
    return got


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


def depth(sqs: Any, url: str) -> int:
    """Visible and in-flight messages of a queue."""
    return inspect.depth(sqs, url).held


def wait_for(check: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (deploy.local.wait.until, every 0.1 s);
    TimeoutError naming `what` at the deadline."""
    return until(check, timeout, what, every=0.1)
