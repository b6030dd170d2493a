"""The faults, on a seeded schedule: each fires when the workload reaches its point of progress.

They run one after another on one thread, while the workload goes on: SIGKILL of a worker (and
the relay threads inside it) mid-batch, then a restart; LocalStack frozen (SIGSTOP, SIGCONT of
its process group); the SMTP sink down for a while; real event bodies delivered again on the
topic and on the FIFO queues; and, on PostgreSQL, every database connection of the run killed.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from deploy.local import localstack
from deploy.local.chaos import say
from deploy.local.chaos.client import Api
from deploy.local.chaos.config import ChaosConfig
from deploy.local.chaos.stack import Stack
from deploy.local.chaos.tap import Captured, Tap
from deploy.local.chaos.workload import Progress
from deploy.local.wait import until
from shared.topology import TOPOLOGY

# The FIFO events the topic carries too, so the tap has them; a charge, which carries a payment
# token, goes to payment-requests.fifo alone, and is taken from the enrollment outbox instead.
FIFO_EVENTS = ("refund.requested", "submission.received")
CHARGE = "charge.requested"
DB_NOT_APPLICABLE = ("SQLite has no server connections to kill: each process opens the file "
                     "itself, so there is nothing to terminate (counted as 0)")


@dataclass(frozen=True)
class Fault:
    at: float  # the share of the workload done when it fires
    kind: str
    target: str = ""


def schedule(config: ChaosConfig, rng: random.Random) -> list[Fault]:
    """Every fault of the budget at a seeded point; kills go round the workers in a seeded
    order, so each is killed once before any twice."""
    order = rng.sample(config.kill_services, len(config.kill_services))
    faults = []
    for kind, count in config.fault_budget().items():
        for i in range(count):
            target = order[i % len(order)] if kind == "worker_kill" else ""
            faults.append(Fault(rng.uniform(0.05, 0.9), kind, target))
    return sorted(faults, key=lambda f: f.at)


@dataclass
class Injector:
    stack: Stack
    tap: Tap
    api: Api
    progress: Progress
    rng: random.Random
    faults: list[Fault]
    counts: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)

    def run(self, stop: threading.Event) -> None:
        for fault in self.faults:
            while self.progress.fraction < fault.at and not stop.wait(0.2):
                pass
            if stop.is_set():
                return
            try:
                getattr(self, fault.kind)(fault, stop)
            except (BotoCoreError, ClientError, RuntimeError, TimeoutError) as exc:
                # the harness's own call failed (not the system under test): say so, go on
                self.details[f"{fault.kind} not injected: {type(exc).__name__}"] += 1
                say(f"fault {fault.kind} could not be injected: {exc}")
                continue
            self.counts[fault.kind] += 1

    def worker_kill(self, fault: Fault, stop: threading.Event) -> None:
        queue = self.stack.queue(TOPOLOGY.consumed_by(fault.target)[0].name)
        busy = self._wait_in_flight(queue.url, stop)
        self.stack.kill_worker(fault.target)
        self.details[f"worker_kill {fault.target}" + (" mid-batch" if busy else "")] += 1
        say(f"fault: SIGKILL the {fault.target} worker"
            + (" with messages in flight" if busy else "") + "; restarting it shortly")
        stop.wait(self.rng.uniform(1, 4))
        self.stack.start_worker(fault.target)

    def _wait_in_flight(self, url: str, stop: threading.Event, timeout: float = 10) -> bool:
        """Give the worker a moment to hold messages, so the kill lands mid-batch."""
        sqs = self.stack.client("sqs", 5)
        for _ in range(int(timeout / 0.2)):
            try:
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            except (BotoCoreError, ClientError):
                return False
            if int(attrs["ApproximateNumberOfMessagesNotVisible"]) or stop.wait(0.2):
                return bool(int(attrs["ApproximateNumberOfMessagesNotVisible"]))
        return False

    def localstack_freeze(self, fault: Fault, stop: threading.Event) -> None:
        seconds = self.stack.config.freeze_seconds
        say(f"fault: LocalStack frozen (SIGSTOP) for {seconds:.0f} s")
        self.stack.freeze_localstack()
        try:
            stop.wait(seconds)
        finally:
            self.stack.thaw_localstack()
        until(lambda: localstack.healthy(self.stack.endpoint), 60, "LocalStack after SIGCONT")
        say("LocalStack resumed (SIGCONT)")

    def smtp_down(self, fault: Fault, stop: threading.Event) -> None:
        seconds = self.stack.config.smtp_down_seconds
        say(f"fault: the SMTP sink is down for {seconds:.0f} s")
        self.stack.stop_sink()
        stop.wait(seconds)
        self.stack.start_sink()
        say("the SMTP sink is back")

    def duplicate_topic(self, fault: Fault, stop: threading.Event) -> None:
        sns = self.stack.client("sns", 10)
        sent = 0
        for captured in self.tap.sample(self.rng, 20):
            attrs = {k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
                     for k, v in captured.attributes.items() if "StringValue" in v}
            sns.publish(TopicArn=self.stack.topic_arn, Message=captured.body,
                        MessageAttributes=attrs)
            sent += 1
        self.details["duplicate_topic messages"] += sent
        say(f"fault: {sent} captured events published again on the topic")

    def duplicate_fifo(self, fault: Fault, stop: threading.Event) -> None:
        sqs = self.stack.client("sqs", 10)
        sent = skipped = 0
        for captured in [*self.tap.sample(self.rng, 7, FIFO_EVENTS), *self._charges(3)]:
            if self._resend_fifo(sqs, captured):
                sent += 1
            else:
                skipped += 1
        self.details["duplicate_fifo messages"] += sent
        self.details["duplicate_fifo skipped (not graded yet, or group id refused)"] += (
            skipped)
        say(f"fault: {sent} captured events sent again to their FIFO queues")

    def _charges(self, count: int) -> list[Captured]:
        """Charges the enrollment relay already sent, as it sent them (from its outbox)."""
        engine = create_engine(self.stack.databases["enrollment"])
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT body, attributes FROM outbox WHERE event_type = :type AND "
                    "published_at IS NOT NULL"), {"type": CHARGE}).all()
        finally:
            engine.dispose()
        picked = self.rng.sample(rows, min(count, len(rows)))
        return [Captured(row.body, json.loads(row.attributes)) for row in picked]

    def _resend_fifo(self, sqs: Any, captured: Captured) -> bool:
        """The same body, attributes and group with a new deduplication id: what a duplicate
        delivery (a producer's retry after a lost reply) looks like to the consumer."""
        event = captured.event
        spec = TOPOLOGY.direct_destinations(event["event_type"])[0]
        if event["event_type"] == "submission.received" and not self._graded(event["data"]):
            return False  # a duplicate must not overtake an earlier version still queued
        queue = self.stack.queue(spec.name)
        try:
            sqs.send_message(QueueUrl=queue.url, MessageBody=captured.body,
                             MessageAttributes=captured.attributes,
                             MessageGroupId=spec.group_id(event["data"]),
                             MessageDeduplicationId=f"chaos-{uuid.uuid4().hex}")
        except ClientError:
            return False
        return True

    def _graded(self, data: dict[str, Any]) -> bool:
        rows = self.api.submissions(data["assignment_id"], data["student_id"])
        return any(r["id"] == data["submission_id"] and r["status"] == "graded" for r in rows)

    def db_kill(self, fault: Fault, stop: threading.Event) -> None:
        killed = kill_connections(self.stack.databases["enrollment"], self.stack.config.db_prefix)
        self.details["db_kill connections terminated"] += killed
        say(f"fault: {killed} PostgreSQL connections of the run terminated")


def kill_connections(any_url: str, prefix: str) -> int:
    """pg_terminate_backend on every connection to the run's databases."""
    admin = create_engine(make_url(any_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    pattern = prefix.replace("_", r"\_") + "%"
    try:
        with admin.connect() as conn:
            rows = conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname LIKE :p AND pid <> pg_backend_pid()"), {"p": pattern}).all()
    finally:
        admin.dispose()
    return sum(bool(r[0]) for r in rows)


def describe(counts: Counter[str], details: Counter[str], db: str) -> list[tuple[str, str]]:
    """Rows of the faults table: kind, how many, and what that meant."""
    rows = [(kind, str(n)) for kind, n in sorted(counts.items())]
    if db != "postgres":
        rows.append(("db_kill (SQLite: no server connections to kill)", "0"))
    return rows + [(f"  {what}", str(n)) for what, n in sorted(details.items())]


def as_json(counts: Counter[str], details: Counter[str]) -> dict[str, Any]:
    return json.loads(json.dumps({"by_kind": counts, "details": details}))
