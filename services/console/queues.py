"""The queues as the console shows them: the topology as a graph with each queue's state, the
messages of every dead-letter queue (payment tokens and emails masked: shared.masking), and
their redrive (one message, or all of them; the original message, never the masked one).

Reading a DLQ must not disturb it. On LocalStack its developer endpoint lists every message
without receiving it. On AWS a listing receives the messages with a short visibility timeout and
hands them straight back; a FIFO DLQ then shows at most the first ten messages of each group
(the rest of a group stay locked while its first are held), and the page says how many it could
not show. A lock keeps this process's listings and redrives from hiding messages from each other.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import cli, inspect
from shared.errors import Conflict, DomainError, NotFound
from shared.events import CATALOGUE
from shared.inspect import localstack_listing, queue_state
from shared.masking import mask_body, mask_text
from shared.settings import SERVICES, Settings
from shared.topology import TOPOLOGY, QueueSpec, physical

LISTED = 50  # messages shown per DLQ
BUSY_AFTER = 5.0  # seconds a request waits for another's DLQ work before it is told so (409)


class Unreachable(DomainError):
    """SQS (or LocalStack) did not answer: the console says so (503) rather than fail."""


@contextmanager
def reaching(settings: Settings) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError, OSError) as exc:
        where = settings.aws_endpoint_url or "AWS"
        raise Unreachable(f"cannot read the queues of {settings.school_env!r} at {where}: "
                          f"{exc}") from exc


def graph() -> dict[str, Any]:
    """The topology's nodes and edges, from shared.topology and the event catalogue."""
    nodes: list[dict[str, Any]] = [{"id": f"service:{s}", "kind": "service", "name": s,
                                    "produces": sorted(CATALOGUE.produced_by(s))}
                                   for s in SERVICES]
    nodes.append({"id": f"topic:{TOPOLOGY.topic.name}", "kind": "topic",
                  "name": TOPOLOGY.topic.name})
    edges: list[dict[str, Any]] = []
    for service in SERVICES:
        if CATALOGUE.produced_by(service):
            edges.append({"from": f"service:{service}", "to": f"topic:{TOPOLOGY.topic.name}",
                          "kind": "publish", "label": "every event"})
    for spec in TOPOLOGY.queues:
        nodes.append({"id": f"queue:{spec.name}", "kind": "queue", "name": spec.name,
                      "fifo": spec.fifo, "consumer": spec.consumer, "dlq": spec.dlq_name,
                      "max_receive_count": spec.max_receive_count})
        nodes.append({"id": f"dlq:{spec.dlq_name}", "kind": "dlq", "name": spec.dlq_name,
                      "queue": spec.name, "fifo": spec.fifo})
        if spec.subscribed:
            label = ", ".join(spec.filter_events) if spec.filter_events else "all events"
            edges.append({"from": f"topic:{TOPOLOGY.topic.name}", "to": f"queue:{spec.name}",
                          "kind": "subscription", "label": label})
        for producer in sorted({p for e in spec.sent_here for p in _producers(e)}):
            edges.append({"from": f"service:{producer}", "to": f"queue:{spec.name}",
                          "kind": "send", "label": ", ".join(spec.sent_here)})
        edges.append({"from": f"queue:{spec.name}", "to": f"service:{spec.consumer}",
                      "kind": "consume", "label": "group by " + ":".join(spec.group_by)
                      if spec.group_by else ""})
        edges.append({"from": f"queue:{spec.name}", "to": f"dlq:{spec.dlq_name}",
                      "kind": "dead-letter", "label": f"after {spec.max_receive_count} attempts"})
    return {"nodes": nodes, "edges": edges}


def _producers(event_type: str) -> list[str]:
    return [s for s in SERVICES if event_type in CATALOGUE.produced_by(s)]


@dataclass
class Queues:
    """The console's view of one environment's queues."""

    sqs: Any
    settings: Settings
    cloudwatch: Any = None  # on AWS, for the age of the oldest message
    _urls: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        """A queue's URL, asked once (the page asks for all ten every 2 seconds)."""
        if name not in self._urls:
            self._urls[name] = self.sqs.get_queue_url(
                QueueName=physical(self.settings.school_env, name))["QueueUrl"]
        return self._urls[name]

    @contextmanager
    def _alone(self) -> Iterator[None]:
        """The DLQ work that receives messages, one at a time in this process: a listing holds
        messages a redrive would look for. A request that cannot start within BUSY_AFTER is
        told so, rather than queue behind a long redrive and starve /healthz of threads."""
        if not self._lock.acquire(timeout=BUSY_AFTER):
            raise Conflict("another listing or redrive of the DLQs is running; try again when "
                           "it has finished")
        try:
            yield
        finally:
            self._lock.release()

    @property
    def _wait(self) -> int:
        """Long-poll receives on AWS, where a short poll of a standard queue asks only some of
        its servers and may come back empty while messages remain; LocalStack answers whole."""
        return 0 if self.settings.aws_endpoint_url else 1

    def states(self) -> dict[str, dict[str, Any]]:
        """Every queue's and DLQ's depth, in-flight count and oldest message's age (seconds)."""
        found = {}
        for spec in TOPOLOGY.queues:
            for name in (spec.name, spec.dlq_name):
                state = queue_state(self.sqs, self.url(name), self.settings, self.cloudwatch)
                found[name] = {"name": name, "physical": state.name, "visible": state.visible,
                               "in_flight": state.in_flight, "oldest_age": state.oldest_age}
        return found

    def dead_letters(self) -> list[dict[str, Any]]:
        """Each DLQ with its messages (at most LISTED each) and why they are there."""
        found = []
        for spec in TOPOLOGY.queues:
            url = self.url(spec.dlq_name)
            messages = self._peek(url)
            waiting = _count(self.sqs, url)
            found.append({"queue": spec.name, "dlq": spec.dlq_name, "fifo": spec.fifo,
                          "count": max(waiting, len(messages)),
                          "messages": [_described(spec, m) for m in messages[:LISTED]],
                          "not_shown": max(0, waiting - min(len(messages), LISTED))})
        return found

    def _peek(self, url: str) -> list[dict[str, Any]]:
        if self.settings.aws_endpoint_url:  # receives nothing: no lock needed
            return _localstack_messages(self.settings.aws_endpoint_url, url)
        held: list[dict[str, Any]] = []
        with self._alone():
            try:
                while len(held) < LISTED and (batch := cli.receive(
                        self.sqs, url, visibility=20, wait=self._wait)):
                    held += batch
            finally:
                cli.release(self.sqs, url, held)
        return held

    def redrive_all(self, spec: QueueSpec) -> dict[str, Any]:
        """Every message of the queue's DLQ back to the queue, one at a time and in order, each
        deleted once sent: on a FIFO DLQ as `school dlq redrive` does. On a standard one too,
        rather than with SQS's move task: the task's calls are SQS's own and do not pass the
        VPC endpoint the queue policies require of the task roles on AWS."""
        dlq_url, url = self.url(spec.dlq_name), self.url(spec.name)
        with self._alone():
            moved = cli.redrive_each(self.sqs, dlq_url, url, io.StringIO(), fifo=spec.fifo,
                                     wait=self._wait)
        return {"queue": spec.name, "dlq": spec.dlq_name, "completed": True, "moved": moved,
                "result": f"{moved} message(s) moved to {spec.name}"}

    def redrive_one(self, spec: QueueSpec, message_id: str) -> dict[str, Any]:
        """One message of the queue's DLQ back to the queue, without its dead-letter attributes.

        In a FIFO DLQ only the first message of its group may go alone: sending a later one
        first would hand the consumer a group's messages out of order (a refusal, 409)."""
        dlq_url, url = self.url(spec.dlq_name), self.url(spec.name)
        held: list[dict[str, Any]] = []
        with self._alone():
            try:
                target, before = None, 0
                while target is None and (batch := cli.receive(self.sqs, dlq_url, visibility=30,
                                                               wait=self._wait)):
                    for message in batch:
                        if message["MessageId"] == message_id and target is None:
                            target, before = message, len(held)
                        else:
                            held.append(message)
                if target is None:
                    behind = (", or behind the first ten messages of its group, which SQS "
                              "shows first: redrive those first, or all of them"
                              if spec.fifo else "")
                    raise NotFound(f"message {message_id} is not in {spec.dlq_name} (already "
                                   f"redriven, or being redriven{behind})")
                # A group's messages are received in its order: those received before it.
                group = target["Attributes"].get("MessageGroupId")
                ahead = [m for m in held[:before] if group and m["Attributes"].get(
                    "MessageGroupId") == group]
                if ahead:
                    held.append(target)
                    raise Conflict(f"message {ahead[0]['MessageId']} of the same group "
                                   f"({group}) is ahead of it in {spec.dlq_name}: redrive "
                                   "that one first, or all of them, to keep the group's order")
                cli.resend(self.sqs, url, target, spec.fifo)
                self.sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=target["ReceiptHandle"])
            finally:
                cli.release(self.sqs, dlq_url, held)
        return {"queue": spec.name, "dlq": spec.dlq_name, "completed": True, "moved": 1,
                "message_id": message_id,
                "result": f"message {message_id} moved to {spec.name}"}


def _count(sqs: Any, url: str) -> int:
    return inspect.depth(sqs, url).held


def _localstack_messages(endpoint: str, url: str) -> list[dict[str, Any]]:
    """Every message of a queue, in flight too, in the shape ReceiveMessage gives, from
    LocalStack's developer endpoint (which receives nothing; not part of the AWS API)."""
    messages = []
    for m in localstack_listing(endpoint, url):
        attributes = m.get("MessageAttribute") or []
        messages.append({
            "MessageId": m["MessageId"], "Body": m.get("Body", ""),
            "Attributes": {a["Name"]: a["Value"] for a in _listed(m.get("Attribute"))},
            "MessageAttributes": {a["Name"]: a["Value"] for a in _listed(attributes)}})
    return messages


def _listed(value: Any) -> list[dict[str, Any]]:
    return [value] if isinstance(value, dict) else list(value or [])


def _described(spec: QueueSpec, message: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as the page shows it: its body and error with payment tokens and emails
    masked (shared.masking; the body before it is cut). Only the display: a redrive receives
    the message again and moves it as it is."""
    attrs = {k: (v or {}).get("StringValue") for k, v in message.get("MessageAttributes",
                                                                     {}).items()}
    sent = message["Attributes"].get("SentTimestamp")
    error = attrs.get("dlq_error")
    return {
        "message_id": message["MessageId"],
        "event_type": attrs.get("event_type"),
        "correlation_id": attrs.get("correlation_id"),
        "dlq_reason": attrs.get("dlq_reason") or "max_receive_count_exceeded",
        "dlq_error": None if error is None else mask_text(error),
        "source_queue": attrs.get("source_queue") or spec.name,
        "group_id": message["Attributes"].get("MessageGroupId"),
        "age": None if sent is None else max(0.0, time.time() - int(sent) / 1000),
        "body": mask_body(message.get("Body", ""))[:4000],
    }
