"""How a consumer settles a message that was not simply handled: a transient failure spends one
attempt of the retry budget and comes back after a backoff, or is dead-lettered once the budget
is spent; a permanent failure or an unreadable body is copied to the DLQ at once, with why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.acks import Heartbeat
from shared.attempts import Attempts
from shared.consumer_config import ConsumerConfig
from shared.envelope import DeadLetterReason, Envelope
from shared.handling import Outcome

log = logging.getLogger(__name__)
Message = dict[str, Any]


@dataclass(frozen=True)
class Settled:
    """What became of a message that was not simply handled: its outcome, and for a retry the
    seconds until it is visible again, for a dead letter the reason it carries."""

    outcome: Outcome
    retry_in: int | None = None
    reason: DeadLetterReason | None = None


class Settler:
    def __init__(self, sqs: Any, config: ConsumerConfig, attempts: Attempts,
                 heartbeat: Heartbeat) -> None:
        self.sqs, self.config, self.attempts, self.heartbeat = sqs, config, attempts, heartbeat

    def failed(self, message: Message, envelope: Envelope, exc: BaseException) -> Settled:
        """Spend one attempt of the budget: retry after a backoff, or dead-letter when spent."""
        error = repr(exc)
        try:
            failures = self.attempts.failed(envelope.event_id, error)
        except Exception as ledger_exc:  # e.g. the database is down: count nothing, retry
            log.warning("could not count the failed attempt (%r); retrying later", ledger_exc)
            return self.retry(message, exc, self.config.retry_delay(self._receives(message)))
        if failures >= self.config.max_attempts:
            settled = self.dead_letter(message, DeadLetterReason.RETRIES_EXHAUSTED,
                                       f"{failures} attempts failed; last: {error}")
            if settled.outcome is Outcome.DEAD_LETTERED:
                self._forget(envelope.event_id)  # a redrive starts with a whole budget
            return settled
        return self.retry(message, exc, self.config.retry_delay(failures), failures)

    def _forget(self, event_id: str) -> None:
        try:
            self.attempts.forget(event_id)
        except Exception as exc:  # the stale count is purged later; the copy is in the DLQ
            log.warning("could not reset the attempts of %s: %r", event_id, exc)

    @staticmethod
    def _receives(message: Message) -> int:
        return int(message["Attributes"].get("ApproximateReceiveCount", "1"))

    def retry(self, message: Message, exc: BaseException, delay: int,
              failures: int | None = None) -> Settled:
        """Hand a failed message back, visible again after `delay` seconds. `failures` is the
        attempts counted so far; None when they could not be counted, or none was spent (the
        dead-letter copy failed)."""
        self.heartbeat.drop(message["ReceiptHandle"])
        attempt = "?" if failures is None else str(failures)
        log.warning("handler failed (attempt %s of %d), retry in %d s: %r", attempt,
                    self.config.max_attempts, delay, exc,
                    extra={"outcome": Outcome.RETRY.value}, exc_info=exc)
        try:
            self.sqs.change_message_visibility(QueueUrl=self.config.queue_url,
                ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay)
        except (BotoCoreError, ClientError) as sqs_exc:
            # Not fatal: the message comes back after its visibility timeout instead.
            log.warning("could not set the retry delay: %s", sqs_exc)
        return Settled(Outcome.RETRY, retry_in=delay)

    def dead_letter(self, message: Message, reason: DeadLetterReason, detail: str) -> Settled:
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
            return self.retry(message, exc, self.config.retry_delay(self._receives(message)))
        log.error("dead-lettered: %s: %s", reason, detail[:300],
                  extra={"outcome": Outcome.DEAD_LETTERED.value})
        return Settled(Outcome.DEAD_LETTERED, reason=reason)
