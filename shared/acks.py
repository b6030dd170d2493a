"""What a consumer tells SQS about the messages it holds, off the handlers' path: the visibility
heartbeat of long-held messages, and the deletes of handled ones, in batches, for throughput."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)
Message = dict[str, Any]
BATCH = 10  # DeleteMessageBatch takes at most 10 entries


class Heartbeat:
    """Extends the visibility of messages held longer than ~70 % of the visibility timeout."""

    def __init__(self, sqs: Any, queue_url: str, visibility_timeout: int,
                 ratio: float = 0.7) -> None:
        self.sqs, self.queue_url = sqs, queue_url
        self.visibility_timeout, self.ratio = visibility_timeout, ratio
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
        period = self.visibility_timeout * self.ratio
        now = time.monotonic()
        with self._lock:
            due = [r for r, at in self._held.items() if now - at >= period]
        for receipt in due:
            try:
                self.sqs.change_message_visibility(QueueUrl=self.queue_url,
                    ReceiptHandle=receipt, VisibilityTimeout=self.visibility_timeout)
            except (BotoCoreError, ClientError) as exc:
                log.warning("could not extend visibility: %s", exc)
                continue
            with self._lock:
                if receipt in self._held:
                    self._held[receipt] = time.monotonic()
            log.info("visibility extended by %d s", self.visibility_timeout,
                     extra={"outcome": "visibility_extended"})

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self.beat()


class Deleter:
    """Deletes handled messages in batches of up to 10, from its own thread.

    A message is queued here only after its transaction committed. A batch goes out as soon as
    10 are waiting, or when the oldest has waited `linger` seconds, so a quiet queue still
    deletes within a few milliseconds and a busy one makes one call per 10 messages whatever
    size its receives were. A failed call is retried with a backoff for about a visibility
    timeout; a message whose delete never succeeds comes back and the inbox absorbs it as a
    duplicate, so nothing is lost and nothing is applied twice.
    """

    def __init__(self, sqs: Any, queue_url: str, heartbeat: Heartbeat,
                 linger: float = 0.05, give_up_after: float = 30.0) -> None:
        self.sqs, self.queue_url, self.heartbeat = sqs, queue_url, heartbeat
        self.linger, self.give_up_after = linger, give_up_after
        self._pending: list[tuple[Message, float]] = []  # (message, when it was queued)
        self._cond = threading.Condition()

    def add(self, message: Message) -> None:
        self.heartbeat.drop(message["ReceiptHandle"])
        with self._cond:
            self._pending.append((message, time.monotonic()))
            if len(self._pending) >= BATCH:
                self._cond.notify()

    def run(self, stop: threading.Event) -> None:
        """Send batches until `stop` is set and nothing is left."""
        failures = 0
        while True:
            with self._cond:
                batch = self._next_batch(stop)
            if batch is None:
                return
            if self._send(batch):
                failures = 0
                continue
            failures += 1
            self._requeue(batch)
            stop.wait(min(0.1 * 2 ** failures, 5.0))

    def _next_batch(self, stop: threading.Event) -> list[tuple[Message, float]] | None:
        while not self._pending:
            if stop.is_set():
                return None
            self._cond.wait(0.2)
        deadline = self._pending[0][1] + self.linger
        while len(self._pending) < BATCH and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        return batch

    def flush(self) -> None:
        """Send everything waiting now, in the caller's thread (a single poll, or shutdown)."""
        while True:
            with self._cond:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            if not batch:
                return
            if not self._send(batch):
                log.warning("%d handled message(s) not deleted: they will come back and be "
                            "absorbed as duplicates", len(batch))

    def _send(self, batch: list[tuple[Message, float]]) -> bool:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                   for i, (m, _) in enumerate(batch)]
        try:
            reply = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            log.warning("deleting %d handled message(s) failed (%s); retrying", len(batch), exc)
            return False
        for failed in reply.get("Failed", []):
            # The message will be delivered again; the inbox recognises it as a duplicate.
            log.warning("delete failed: %s %s", failed.get("Code"), failed.get("Message"))
        return True

    def _requeue(self, batch: list[tuple[Message, float]]) -> None:
        now = time.monotonic()
        keep = [(m, at) for m, at in batch if now - at < self.give_up_after]
        if len(keep) < len(batch):
            log.warning("gave up deleting %d handled message(s): they will come back and be "
                        "absorbed as duplicates", len(batch) - len(keep))
        with self._cond:
            self._pending[:0] = keep
