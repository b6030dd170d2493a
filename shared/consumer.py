"""The consumer runtime shared by every worker.

Long-poll receive; one outcome per message; transient failures back off through the visibility
timeout, counted as handler attempts (not receives) against a retry budget, after which the
consumer dead-letters the message itself; poison messages are copied to the DLQ at once with a
reason; FIFO groups run strictly in order, a failure holding back only its own group;
long handlers get their visibility extended; SIGTERM finishes in-flight work within a deadline.

For throughput the consumer receives while it handles, holding at most a window of
messages; handler threads take what is ready in batches, one transaction per batch with a
savepoint per message (a FIFO group stays with one thread, in order); handled messages are
deleted in batches of 10 from a thread of their own, each only after its transaction committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from shared import telemetry
from shared.acks import BATCH, Deleter, Heartbeat
from shared.attempts import Attempts
from shared.consumer_config import ConsumerConfig
from shared.envelope import DeadLetterReason, Envelope, PoisonMessage
from shared.handling import Outcome, PermanentError
from shared.logs import bound
from shared.settle import Settled, Settler
from shared.window import Window

log = logging.getLogger(__name__)
Message = dict[str, Any]
# Outcomes after which the message leaves the queue (a dead-lettered one has its copy in the DLQ).
_DONE = (Outcome.HANDLED, Outcome.DUPLICATE, Outcome.DEAD_LETTERED)


class Reader(Protocol):
    """What the runtime needs of a dispatcher: read a body, then handle events in a batch."""

    def read(self, body: str) -> Envelope: ...

    def handle_batch(self, envelopes: Sequence[Envelope], keys: Sequence[str | None],
                     go_on: Callable[[], bool], spans: Sequence[Any] | None = None
                     ) -> list[Outcome | Exception | None]: ...


class Consumer:
    def __init__(self, sqs: Any, config: ConsumerConfig, dispatcher: Reader,
                 attempts: Attempts) -> None:
        self.sqs, self.config, self.dispatcher = sqs, config, dispatcher
        self.heartbeat = Heartbeat(sqs, config.queue_url, config.visibility_timeout,
                                   config.heartbeat_ratio)
        self.deleter = Deleter(sqs, config.queue_url, self.heartbeat, config.delete_linger,
                               give_up_after=config.visibility_timeout)
        self.settler = Settler(sqs, config, attempts, self.heartbeat)
        self.window = Window(config.window, config.max_messages, config.fifo,
                             config.concurrency, config.batch_size)
        self._halt = threading.Event()  # set when the shutdown deadline has passed
        self.abandoned = 0  # messages still in a handler when the deadline passed

    # --- receiving ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Receive and handle until `stop` is set; then finish or release in-flight work."""
        done = threading.Event()  # the handler threads and helpers end once it is set
        threads = [threading.Thread(target=self._work, args=(stop, done), daemon=True,
                                    name=f"handler_{i}") for i in range(self.config.concurrency)]
        threads += [threading.Thread(target=self.heartbeat.run, args=(done,), daemon=True,
                                     name="heartbeat"),
                    threading.Thread(target=self.deleter.run, args=(done,), daemon=True,
                                     name="deleter")]
        for thread in threads:
            thread.start()
        try:
            self._receive_until(stop)
            self._drain(stop)
        finally:
            done.set()
            self.window.wake()
            for thread in threads if not self.abandoned else threads[-2:]:
                thread.join(timeout=self.config.shutdown_deadline)
            self.deleter.flush()
        self.window.raise_errors()

    def _receive_until(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.window.raise_errors()
            if not self.window.room():
                continue
            ticket = self.window.receiving()
            try:
                messages = self.receive()
                failures = 0
            except (BotoCoreError, ClientError) as exc:
                failures += 1
                log.warning("receiving failed (%s); retrying", exc)
                stop.wait(self.config.backoff.delay(failures))
                continue
            self._accept(messages, stop, None, ticket)

    def receive(self) -> list[Message]:
        reply = self.sqs.receive_message(
            QueueUrl=self.config.queue_url, MaxNumberOfMessages=self.config.max_messages,
            WaitTimeSeconds=self.config.wait_seconds, MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"])
        messages: list[Message] = reply.get("Messages", [])
        return messages

    def poll_once(self, stop: threading.Event | None = None) -> dict[str, Outcome]:
        """One receive, handled in the caller's thread, deletes included: each message's
        outcome. (Tests step the consumer with this; a worker calls run().)"""
        stop = stop or threading.Event()
        outcomes: dict[str, Outcome] = {}
        self._accept(self.receive(), stop, outcomes)
        while (batch := self.window.take(stop)) is not None:
            self._handle(batch, stop, outcomes)
        self.deleter.flush()
        return outcomes

    def _accept(self, messages: list[Message], stop: threading.Event,
                outcomes: dict[str, Outcome] | None, ticket: int | None = None) -> None:
        """Hold the received messages and queue them for the handler threads."""
        if not messages:
            return
        self.heartbeat.hold(messages)
        self.window.hold(len(messages))
        if stop.is_set():  # stopped during the long poll: hand everything straight back
            self._release(messages, outcomes)
            return
        for group, wait in self.window.add(messages, ticket):
            # A later message of a group whose earlier one failed (LocalStack unlocks a group
            # when one of its messages is made visible again; SQS does not): it waits with it.
            self._release(group, outcomes, wait)

    # --- handling ----------------------------------------------------------------------------

    def _work(self, stop: threading.Event, done: threading.Event) -> None:
        try:
            while not done.is_set():
                batch = self.window.take(stop, wait=done)
                if batch is not None:
                    self._handle(batch, stop, None)
        except BaseException as exc:  # a bug in the runtime itself must not pass silently
            log.exception("consumer runtime error", extra={"outcome": "runtime_error"})
            self.window.fail(exc)

    def _handle(self, batch: list[Message], stop: threading.Event,
                outcomes: dict[str, Outcome] | None) -> None:
        """Read, handle in as few transactions as it takes, then settle each message."""
        todo: list[tuple[Message, Envelope]] = []
        failed: dict[str, int] = {}  # FIFO group -> the delay its failed message waits
        spans = {m["ReceiptHandle"]: telemetry.processing(self.config.queue_name,
                                                          self.queue_physical, m) for m in batch}
        for message in batch:
            key = self._group_id(message)
            if key is not None and key in failed:
                self._settle(message, None, None, failed, outcomes, spans)
                continue
            envelope = self._read(message)
            if isinstance(envelope, Envelope):
                todo.append((message, envelope))
            else:
                self._settle(message, None, envelope, failed, outcomes, spans)
        results = self.dispatcher.handle_batch(
            [e for _, e in todo], [self._group_id(m) for m, _ in todo],
            lambda: not (stop.is_set() or self._halt.is_set()),
            [spans[m["ReceiptHandle"]] for m, _ in todo]) if todo else []
        if not self.window.still_running([m for m, _ in todo]):
            for span in spans.values():  # past the shutdown deadline: _drain handed them back
                telemetry.settled(span, self.config.queue_name, "released")
            return
        for (message, envelope), result in zip(todo, results, strict=True):
            with bound(correlation=envelope.correlation_id, event=envelope.event_id):
                self._settle(message, envelope, result, failed, outcomes, spans)
        groups = {g for m in batch if (g := self._group_id(m)) is not None}
        for group_id, rest, delay in self.window.after_batch(groups, failed, stop):
            self._release(rest, outcomes, delay)
            while late := self.window.retire(group_id, delay):  # received while handed back
                self._release(late, outcomes, delay)

    def _read(self, message: Message) -> Envelope | Settled:
        attrs = message.get("MessageAttributes", {})
        correlation = attrs.get("correlation_id", {}).get("StringValue")
        with bound(correlation=correlation, event=None):
            try:
                return self.dispatcher.read(message["Body"])
            except PoisonMessage as exc:
                return self.settler.dead_letter(message, exc.reason, exc.detail)
            except Exception as exc:  # reading is pure: no retry could ever read it either
                log.exception("could not read a message", extra={"outcome": "unreadable"})
                return self.settler.dead_letter(message, DeadLetterReason.UNREADABLE, repr(exc))

    def _settle(self, message: Message, envelope: Envelope | None,
                result: Settled | Outcome | Exception | None, failed: dict[str, int],
                outcomes: dict[str, Outcome] | None, spans: dict[str, Any]) -> None:
        """Turn a message's result into its outcome: delete, retry, dead-letter or hand back."""
        key = self._group_id(message)
        span = spans.pop(message["ReceiptHandle"], None)
        if result is None:  # not run: behind a failed message of its group, or stopping
            delay = failed.get(key, 0) if key else 0
            self._release([message], outcomes, delay)
            telemetry.settled(span, self.config.queue_name, Outcome.RELEASED.value,
                              visible_in_s=delay, behind_failed_group=key in failed)
            return
        if isinstance(result, PermanentError):
            settled = self.settler.dead_letter(message, DeadLetterReason.PERMANENT_FAILURE,
                                               str(result) or type(result).__name__)
        elif isinstance(result, Exception):
            assert envelope is not None
            settled = self.settler.failed(message, envelope, result)
        elif isinstance(result, Settled):  # unreadable: dead-lettered as it was read
            settled = result
        else:
            settled = Settled(result)
            if envelope is not None:
                log.info("%s %s", result.value, envelope.event_type,
                         extra={"outcome": result.value})
        outcome = settled.outcome
        if outcome is Outcome.RETRY and key is not None:
            failed[key] = settled.retry_in or 0
        elif isinstance(result, Exception) and key is not None:
            failed.setdefault(key, 0)  # dead-lettered: the group's later messages come back now
        telemetry.settled(span, self.config.queue_name, outcome.value,
                          error=result if isinstance(result, Exception) else None,
                          retry_in_s=settled.retry_in, reason=settled.reason)
        if outcome in _DONE:
            self.deleter.add(message)
        if outcomes is not None:
            outcomes[message["MessageId"]] = outcome
        self.window.done([message])

    @property
    def queue_physical(self) -> str:
        return self.config.queue_url.rsplit("/", 1)[-1]

    def _group_id(self, message: Message) -> str | None:
        return message["Attributes"]["MessageGroupId"] if self.config.fifo else None

    # --- handing back and stopping -----------------------------------------------------------

    def _release(self, messages: list[Message], outcomes: dict[str, Outcome] | None,
                 visibility: int = 0) -> None:
        """Hand messages back unhandled: visible again at once, or after `visibility` seconds."""
        if not messages:
            return
        for message in messages:
            self.heartbeat.drop(message["ReceiptHandle"])
            if outcomes is not None:
                outcomes[message["MessageId"]] = Outcome.RELEASED
        log.info("handing back %d unhandled message(s), visible in %d s", len(messages),
                 visibility, extra={"outcome": Outcome.RELEASED.value})
        for start in range(0, len(messages), BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                        "VisibilityTimeout": visibility}
                       for i, m in enumerate(messages[start:start + BATCH])]
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=self.config.queue_url,
                                                         Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.warning("could not release %d messages (they return after their "
                            "visibility timeout): %s", len(entries), exc)
        self.window.done(messages)

    def _drain(self, stop: threading.Event) -> None:
        """Wait for every held message to finish. Once stopped, hand back at once what no thread
        has started; after the deadline, hand back what is still in a handler too (its
        transaction is not waited for: the inbox absorbs it if it commits after all)."""
        if stop.is_set():
            self._release(self.window.unclaimed(), None)
        stuck = self.window.wait_empty(stop, self.config.shutdown_deadline)
        if stuck is None:
            return
        self._halt.set()
        log.warning("shutdown deadline passed with %d message(s) in a handler", len(stuck))
        self.abandoned += len(stuck)
        self._release(stuck, None)
