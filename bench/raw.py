"""Part 1, the emulator's own limits: one client, one thread, boto3, on a standard queue and a
FIFO queue of 20 groups. SendMessageBatch; ReceiveMessage(10) + DeleteMessageBatch; and the
receive-one/delete-one loop (ReceiveMessage(1) then DeleteMessage), the seeds' way."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.report import Results
from bench.session import Bench, BenchError, done, progress, say, until
from shared.events import CATALOGUE
from shared.topology import TOPOLOGY

GROUPS = 20
KINDS = ("standard", "fifo")
LABELS = {"send": "SendMessageBatch(10)", "batch": "ReceiveMessage(10) + DeleteMessageBatch",
          "one": "ReceiveMessage(1) + DeleteMessage loop"}


@dataclass(frozen=True)
class RawOptions:
    messages: int = 3000  # for the batch figures
    one_by_one: int = 300  # for the receive-one/delete-one loop


def entries(count: int, fifo: bool) -> list[dict[str, Any]]:
    """Real envelopes (a charge.requested, as the payment queue carries), so sizes match."""
    spec = TOPOLOGY.queue("payment-requests.fifo")
    out = []
    for i in range(count):
        event = CATALOGUE.new("charge.requested", {
            "enrollment_id": f"e{i}", "student_id": f"s{i % GROUPS}", "course_id": "c1",
            "amount_cents": 4990, "currency": "USD", "payment_token": "tok_ok"},
            correlation_id="bench")
        entry: dict[str, Any] = {"Id": str(i % 10), "MessageBody": event.body(),
                                 "MessageAttributes": event.attributes()}
        if fifo:
            entry |= {"MessageGroupId": spec.group_id(event.data) or "",
                      "MessageDeduplicationId": event.event_id}
        out.append(entry)
    return out


def send_all(sqs: Any, url: str, batch: list[dict[str, Any]]) -> None:
    for start in range(0, len(batch), 10):
        reply = sqs.send_message_batch(QueueUrl=url, Entries=batch[start:start + 10])
        if reply.get("Failed"):
            raise BenchError(f"SendMessageBatch refused entries: {reply['Failed'][:2]}")


def drain(sqs: Any, url: str, count: int, deadline: float, batch: bool) -> None:
    """Receive and delete `count` messages: ReceiveMessage(10) + DeleteMessageBatch when
    `batch`, else the receive-one/delete-one loop (ReceiveMessage(1) then DeleteMessage)."""
    left = count

    def drained() -> bool:
        nonlocal left
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10 if batch else 1,
                                       WaitTimeSeconds=1).get("Messages", [])
        if batch and messages:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)])
        elif not batch:
            for m in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        left -= len(messages)
        return left <= 0

    try:
        until(drained, deadline - time.monotonic(), f"{count} messages received", every=0)
    except BenchError:
        raise BenchError(f"received {count - left} of {count} messages before the deadline"
                         ) from None


def timed(what: str, count: int, job: Any) -> float:
    progress(f"{what}: {count} messages...")
    started = time.perf_counter()
    job()
    rate = count / (time.perf_counter() - started)
    done(f"{what}: {count} messages, {rate:,.0f} msgs/s")
    return rate


def measure_kind(bench: Bench, kind: str, opts: RawOptions) -> dict[str, float]:
    """The three figures of one queue kind, on a queue of its own that is deleted afterwards."""
    sqs, fifo = bench.client("sqs"), kind == "fifo"
    name = bench.name("raw") + (".fifo" if fifo else "")
    attrs = {"VisibilityTimeout": "30"} | ({"FifoQueue": "true"} if fifo else {})
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    try:
        batch, ones = entries(opts.messages, fifo), entries(opts.one_by_one, fifo)
        deadline = time.monotonic() + 300
        rates = {
            "send": timed(f"{kind} send batch", len(batch), lambda: send_all(sqs, url, batch)),
            "batch": timed(f"{kind} receive(10) + delete batch", len(batch),
                           lambda: drain(sqs, url, len(batch), deadline, True)),
        }
        send_all(sqs, url, ones)
        rates["one"] = timed(f"{kind} receive-one/delete-one", len(ones),
                             lambda: drain(sqs, url, len(ones), deadline, False))
        if bench.depth(sqs, url):
            raise BenchError(f"raw {kind} queue not empty after the drain")
        return rates
    finally:
        sqs.delete_queue(QueueUrl=url)


def measure(bench: Bench, opts: RawOptions, results: Results) -> None:
    say(f"raw limits: {opts.messages} messages in batches, {opts.one_by_one} one by one, "
        f"FIFO over {GROUPS} groups")
    for kind in KINDS:
        for figure, rate in measure_kind(bench, kind, opts).items():
            results.add("raw", f"raw.{kind}.{figure}", f"{kind}: {LABELS[figure]}", "msgs/s",
                        rate)
