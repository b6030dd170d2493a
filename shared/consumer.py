"""The consumer runtime shared by every worker (DESIGN section 5).

Long-poll receive; one outcome per message; transient failures back off through the visibility
timeout, counted as handler attempts (not receives) against a retry budget, after which the
consumer dead-letters the message itself; poison messages are copied to the DLQ at once with a
reason; FIFO groups run strictly in order, a failure holding back only its own group;
long handlers get their visibility extended; SIGTERM finishes in-flight work within a deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from shared.attempts import Attempts
from shared.backoff import Backoff
from shared.envelope import Envelope, PoisonMessage
from shared.handling import Outcome, PermanentError
from shared.logs import bound

log = logging.getLogger(__name__)
Message = dict[str, Any]
# Outcomes after which the message leaves the queue (a dead-lettered one has its copy in the DLQ).
_DONE = (Outcome.HANDLED, Outcome.DUPLICATE, Outcome.DEAD_LETTERED)


class Reader(Protocol):
    """What the runtime needs of a dispatcher: read a body, then handle the event."""

    def read(self, body: str) -> Envelope: ...

    def __call__(self, envelope: Envelope) -> Outcome: ...


@dataclass(frozen=True)
class ConsumerConfig:
    queue_name: str  # logical name, written to `source_queue` on dead-lettered copies
    queue_url: str
    dlq_url: str
    visibility_timeout: int
    max_messages: int = 10
    wait_seconds: int = 20
    concurrency: int = 4
    shutdown_deadline: float = 20.0
    heartbeat_ratio: float = 0.7
    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int = 5  # the retry budget: failed handler attempts, not receives

    def retry_delay(self, failures: int) -> int:
        """Visibility, in whole seconds, before a message that failed `failures` times is tried
        again. With the defaults a message that always fails is dead-lettered after
        2 + 4 + 8 + 16 s at worst for a budget of 5, within the minute DESIGN asks for."""
        return round(self.backoff.delay(failures))

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")


class Heartbeat:
    """Extends the visibility of messages held longer than ~70 % of the visibility timeout."""

    def __init__(self, sqs: Any, config: ConsumerConfig) -> None:
        self.sqs, self.config = sqs, config
        self._held: dict[str, float] = {}  # receipt handle -> when its visibility was last set
        self._lock = threading.Lock()

    def hold(self, messages: Iterable[Message]) -> None:
        now = time.monotonic()
        with self._lock:
            self._held.update({m["ReceiptHandle"]: now for m in messages})

    def drop(self, receipt: str) -> None:
        with self._lock:
            self._held.pop(receipt, None)

    def beat(self) -> None:
        period = self.config.visibility_timeout * self.config.heartbeat_ratio
        now = time.monotonic()
        with self._lock:
            due = [r for r, at in self._held.items() if now - at >= period]
        for receipt in due:
            try:
                self.sqs.change_message_visibility(QueueUrl=self.config.queue_url,
                    ReceiptHandle=receipt, VisibilityTimeout=self.config.visibility_timeout)
            except (BotoCoreError, ClientError) as exc:
                log.warning("could not extend visibility: %s", exc)
                continue
            with self._lock:
                if receipt in self._held:
                    self._held[receipt] = time.monotonic()
            log.info("visibility extended by %d s", self.config.visibility_timeout,
                     extra={"outcome": "visibility_extended"})

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self.beat()


class Consumer:
    def __init__(self, sqs: Any, config: ConsumerConfig, dispatcher: Reader,
                 attempts: Attempts) -> None:
        self.sqs, self.config, self.dispatcher = sqs, config, dispatcher
        self.attempts = attempts
        self.heartbeat = Heartbeat(sqs, config)
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="handler")
        self._halt = threading.Event()  # set when the shutdown deadline has passed
        self.abandoned = 0  # messages still in a handler when the deadline passed

    def run(self, stop: threading.Event) -> None:
        """Receive and handle until `stop` is set; then finish or release in-flight work."""
        beat_stop = threading.Event()
        threading.Thread(target=self.heartbeat.run, args=(beat_stop,), daemon=True,
                         name="heartbeat").start()
        failures = 0
        try:
            while not stop.is_set():
                try:
                    self.poll_once(stop)
                    failures = 0
                except (BotoCoreError, ClientError) as exc:
                    failures += 1
                    log.warning("receiving or deleting failed (%s); retrying", exc)
                    stop.wait(self.config.backoff.delay(failures))
        finally:
            beat_stop.set()
            self._pool.shutdown(wait=not self.abandoned, cancel_futures=True)

    def receive(self) -> list[Message]:
        reply = self.sqs.receive_message(
            QueueUrl=self.config.queue_url, MaxNumberOfMessages=self.config.max_messages,
            WaitTimeSeconds=self.config.wait_seconds, MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"])
        messages: list[Message] = reply.get("Messages", [])
        return messages

    def poll_once(self, stop: threading.Event | None = None) -> dict[str, Outcome]:
        """One receive and the handling of its batch; returns each message id's outcome."""
        stop = stop or threading.Event()
        messages = self.receive()
        if not messages:
            return {}
        self.heartbeat.hold(messages)
        outcomes: dict[str, Outcome] = {}
        if stop.is_set():  # stopped during the long poll: hand everything straight back
            self._release(messages, outcomes)
            return outcomes
        futures = [self._pool.submit(self._run_group, group, outcomes, stop)
                   for group in self._groups(messages)]
        self._await(futures, stop)
        unfinished = [m for m in messages if m["MessageId"] not in outcomes]
        self.abandoned += len(unfinished)
        self._release(unfinished, outcomes)
        self._delete([m for m in messages if outcomes[m["MessageId"]] in _DONE])
        return outcomes

    def _groups(self, messages: list[Message]) -> list[list[Message]]:
        """FIFO: one list per message group, in received order; standard: one per message."""
        if not self.config.fifo:
            return [[m] for m in messages]
        groups: OrderedDict[str, list[Message]] = OrderedDict()
        for m in messages:
            groups.setdefault(m["Attributes"]["MessageGroupId"], []).append(m)
        return list(groups.values())

    def _await(self, futures: list[Future[None]], stop: threading.Event) -> None:
        pending = set(futures)
        stopped_at: float | None = None
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # a bug in the runtime itself must not pass silently
            if stop.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > self.config.shutdown_deadline:
                    self._halt.set()
                    log.warning("shutdown deadline passed with %d groups in flight", len(pending))
                    return

    def _run_group(self, group: list[Message], outcomes: dict[str, Outcome],
                   stop: threading.Event) -> None:
        for index, message in enumerate(group):
            if stop.is_set() or self._halt.is_set():
                self._release(group[index:], outcomes)
                return
            outcome = self._handle(message)
            if self._halt.is_set():
                return  # past the deadline: the main thread has already released this message
            outcomes[message["MessageId"]] = outcome
            if outcome is Outcome.RETRY:
                # FIFO: the rest of the group must not overtake the failed message. They come
                # back with it, after its delay, not at 0: on SQS the failed message keeps the
                # group locked either way, but LocalStack unlocks a group as soon as any of its
                # received messages is made visible again (sqs/models.py, FifoQueue._put_message).
                self._release(group[index + 1:], outcomes, message.get("retry_delay", 0))
                return

    def _handle(self, message: Message) -> Outcome:
        attrs = message.get("MessageAttributes", {})
        correlation = attrs.get("correlation_id", {}).get("StringValue")
        with bound(correlation=correlation, event=None):
            try:
                envelope = self.dispatcher.read(message["Body"])
            except PoisonMessage as exc:
                return self._dead_letter(message, exc.reason, exc.detail)
            except Exception as exc:  # reading is pure: no retry could ever read it either
                log.exception("could not read a message", extra={"outcome": "unreadable"})
                return self._dead_letter(message, "unreadable", repr(exc))
            with bound(correlation=envelope.correlation_id, event=envelope.event_id):
                return self._dispatch(message, envelope)

    def _dispatch(self, message: Message, envelope: Envelope) -> Outcome:
        try:
            outcome = self.dispatcher(envelope)
        except PermanentError as exc:
            return self._dead_letter(message, "permanent_failure", str(exc) or type(exc).__name__)
        except Exception as exc:  # any other failure is transient: retry later, never swallow
            return self._failed(message, envelope, exc)
        log.info("%s %s", outcome.value, envelope.event_type, extra={"outcome": outcome.value})
        return outcome

    def _failed(self, message: Message, envelope: Envelope, exc: Exception) -> Outcome:
        """Spend one attempt of the budget: retry after a backoff, or dead-letter when spent."""
        error = repr(exc)
        try:
            failures = self.attempts.failed(envelope.event_id, error)
        except Exception as ledger_exc:  # e.g. the database is down: count nothing, retry
            log.warning("could not count the failed attempt (%r); retrying later", ledger_exc)
            receives = int(message["Attributes"].get("ApproximateReceiveCount", "1"))
            return self._retry(message, exc, self.config.retry_delay(receives), "?")
        if failures >= self.config.max_attempts:
            outcome = self._dead_letter(message, "retries_exhausted",
                                        f"{failures} attempts failed; last: {error}")
            if outcome is Outcome.DEAD_LETTERED:
                self._forget(envelope.event_id)  # a redrive starts with a whole budget
            return outcome
        return self._retry(message, exc, self.config.retry_delay(failures), str(failures))

    def _forget(self, event_id: str) -> None:
        try:
            self.attempts.forget(event_id)
        except Exception as exc:  # the stale count is purged later; the copy is in the DLQ
            log.warning("could not reset the attempts of %s: %r", event_id, exc)

    def _retry(self, message: Message, exc: Exception, delay: int, failures: str) -> Outcome:
        """Hand a failed message back, visible again after `delay` seconds."""
        message["retry_delay"] = delay
        self.heartbeat.drop(message["ReceiptHandle"])
        log.warning("handler failed (attempt %s of %d), retry in %d s: %r", failures,
                    self.config.max_attempts, delay, exc,
                    extra={"outcome": Outcome.RETRY.value}, exc_info=exc)
        try:
            self.sqs.change_message_visibility(QueueUrl=self.config.queue_url,
                ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay)
        except (BotoCoreError, ClientError) as sqs_exc:
            # Not fatal: the message comes back after its visibility timeout instead.
            log.warning("could not set the retry delay: %s", sqs_exc)
        return Outcome.RETRY

    def _dead_letter(self, message: Message, reason: str, detail: str) -> Outcome:
        """Copy to the DLQ with why, keeping the original attributes; the caller deletes it."""
        attrs = dict(message.get("MessageAttributes", {}))
        attrs |= {
            "dlq_reason": {"DataType": "String", "StringValue": reason},
            "dlq_error": {"DataType": "String", "StringValue": (detail or "-")[:1000]},
            "source_queue": {"DataType": "String", "StringValue": self.config.queue_name},
        }
        params: dict[str, Any] = {"QueueUrl": self.config.dlq_url,
                                  "MessageBody": message["Body"], "MessageAttributes": attrs}
        if self.config.fifo:
            params |= {"MessageGroupId": message["Attributes"]["MessageGroupId"],
                       "MessageDeduplicationId": message["MessageId"]}
        try:
            self.sqs.send_message(**params)
        except (BotoCoreError, ClientError) as exc:
            log.error("could not dead-letter (%s): %s; will retry", reason, exc)
            receives = int(message["Attributes"].get("ApproximateReceiveCount", "1"))
            return self._retry(message, exc, self.config.retry_delay(receives), "-")
        log.error("dead-lettered: %s: %s", reason, detail[:300],
                  extra={"outcome": Outcome.DEAD_LETTERED.value})
        return Outcome.DEAD_LETTERED

    def _release(self, messages: list[Message], outcomes: dict[str, Outcome],
                 visibility: int = 0) -> None:
        """Hand messages back unhandled: visible again at once, or after `visibility` seconds."""
        for message in messages:
            self.heartbeat.drop(message["ReceiptHandle"])
            outcomes[message["MessageId"]] = Outcome.RELEASED
        if not messages:
            return
        log.info("handing back %d unhandled message(s), visible in %d s", len(messages),
                 visibility, extra={"outcome": Outcome.RELEASED.value})
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                    "VisibilityTimeout": visibility} for i, m in enumerate(messages)]
        try:
            self.sqs.change_message_visibility_batch(QueueUrl=self.config.queue_url,
                                                     Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not release %d messages (they return after their visibility "
                        "timeout): %s", len(messages), exc)

    def _delete(self, messages: list[Message]) -> None:
        for message in messages:
            self.heartbeat.drop(message["ReceiptHandle"])
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                       for i, m in enumerate(chunk)]
            reply = self.sqs.delete_message_batch(QueueUrl=self.config.queue_url,
                                                  Entries=entries)
            for failed in reply.get("Failed", []):
                # The message will be delivered again; the inbox recognises it as a duplicate.
                log.warning("delete failed: %s %s", failed.get("Code"), failed.get("Message"))
