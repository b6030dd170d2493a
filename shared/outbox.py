"""The transactional outbox and its relay (DESIGN section 5).

A service writes its change and its outgoing messages in one transaction (`Outbox.add`); the relay
publishes pending rows in order per destination and group, up to 10 and 256 KiB per batch call,
marks them published, and never drops an unpublished row: a row SQS refuses for ever is kept as a
dead row, with its reason, until an operator retries it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine, Row, Table, delete, func, insert, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.backoff import Backoff
from shared.envelope import MAX_MESSAGE_BYTES, Envelope, message_size
from shared.topology import Topology, physical

log = logging.getLogger(__name__)
BATCH = 10  # the most SendMessageBatch and PublishBatch accept in one call


@dataclass(frozen=True)
class Outbox:
    """Writes an event's messages, routed by the topology, inside the caller's transaction."""

    table: Table
    topology: Topology

    def add(self, session: Session, envelope: Envelope) -> None:
        envelope.check_size()  # refuse an oversized event now, in the request, not in the relay
        rows = [self._row(self.topology.topic.name, None, envelope)]
        for queue in self.topology.direct_destinations(envelope.event_type):
            rows.append(self._row(queue.name, queue.group_id(envelope.data), envelope))
        session.execute(insert(self.table), rows)

    @staticmethod
    def _row(destination: str, group_id: str | None, envelope: Envelope) -> dict[str, Any]:
        return {
            "destination": destination, "group_id": group_id, "dedup_id": envelope.event_id,
            "event_id": envelope.event_id, "event_type": envelope.event_type,
            "body": envelope.body(), "attributes": json.dumps(envelope.attributes()),
            "created_at": datetime.now(UTC), "attempts": 0,
        }


# A batch call's entries may add up to at most 256 KiB, bodies and attributes together, on both
# SendMessageBatch and PublishBatch (`BatchRequestTooLong` otherwise): a relay that filled a batch
# by count alone retried six 100 KB submissions for ever.
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES
# Error codes that concern the request's content, not SQS's health: a batch refused with one is
# split into single calls, and a single row refused with one is set aside as dead. Every other
# error (throttling, a missing queue, credentials, the network) is the relay's to back off on.
CONTENT_ERRORS = frozenset({
    "BatchRequestTooLong", "RequestTooLong", "MessageTooLong", "InvalidParameterValue",
    "InvalidParameter", "InvalidMessageContents", "InvalidAttributeName", "InvalidAttributeValue",
    "InvalidBatchEntryId", "BatchEntryIdsNotDistinct", "TooManyEntriesInBatchRequest",
    "ValidationError",
})


@dataclass
class SendResult:
    """What one call made of its rows: accepted, refused for ever, or refused for now."""

    sent: set[int] = field(default_factory=set)
    dead: dict[int, str] = field(default_factory=dict)
    deferred: dict[int, str] = field(default_factory=dict)

    def merge(self, other: SendResult) -> None:
        self.sent |= other.sent
        self.dead |= other.dead
        self.deferred |= other.deferred


def error_code(exc: ClientError) -> str:
    """`AWS.SimpleQueueService.BatchRequestTooLong`, `InvalidParameterValueException` and
    `InvalidParameterValue` as the plain code: SQS's query and JSON protocols spell them so."""
    code = str(exc.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]
    return code.removesuffix("Exception")


def row_size(row: Row[Any]) -> int:
    return message_size(row.body, json.loads(row.attributes))


class Publisher:
    """Sends outbox rows to SNS or SQS in batches and sorts out what each call made of them."""

    def __init__(self, sqs: Any, sns: Any, topology: Topology, env: str) -> None:
        self.sqs, self.sns, self.topology, self.env = sqs, sns, topology, env
        self._targets: dict[str, str] = {}

    def target(self, destination: str) -> str:
        """Queue URL or topic ARN of a logical destination, looked up once."""
        if destination not in self._targets:
            name = physical(self.env, destination)
            if destination == self.topology.topic.name:
                self._targets[destination] = self.sns.create_topic(Name=name)["TopicArn"]
            else:
                self._targets[destination] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._targets[destination]

    def send(self, destination: str, rows: Sequence[Row[Any]]) -> SendResult:
        """One batch call; a batch refused for its content as a whole is retried row by row.

        Raises BotoCoreError or ClientError when the failure is not the rows' own.
        """
        try:
            reply = self._call(destination, rows)
        except ClientError as exc:
            code = error_code(exc)
            if code not in CONTENT_ERRORS:
                raise
            if len(rows) == 1:
                return SendResult(dead={rows[0].id: f"{code}: {exc}"[:1000]})
            result = SendResult()
            for row in rows:
                result.merge(self.send(destination, [row]))
            return result
        result = SendResult(sent={int(ok["Id"]) for ok in reply.get("Successful", [])})
        for failed in reply.get("Failed", []):
            reason = f"{failed.get('Code')}: {failed.get('Message', '')}"[:1000]
            # SenderFault: the entry itself is wrong and will be refused again (SQS API
            # reference, BatchResultErrorEntry); otherwise it is SQS's trouble, try later.
            bucket = result.dead if failed.get("SenderFault") else result.deferred
            bucket[int(failed["Id"])] = reason
        return result

    def _call(self, destination: str, rows: Sequence[Row[Any]]) -> dict[str, Any]:
        target = self.target(destination)
        if destination == self.topology.topic.name:
            entries = [{"Id": str(r.id), "Message": r.body,
                        "MessageAttributes": json.loads(r.attributes)} for r in rows]
            reply: dict[str, Any] = self.sns.publish_batch(TopicArn=target,
                                                           PublishBatchRequestEntries=entries)
        else:
            reply = self.sqs.send_message_batch(QueueUrl=target,
                                                Entries=[self._sqs_entry(r) for r in rows])
        return reply

    @staticmethod
    def _sqs_entry(row: Row[Any]) -> dict[str, Any]:
        entry = {"Id": str(row.id), "MessageBody": row.body,
                 "MessageAttributes": json.loads(row.attributes)}
        if row.group_id is not None:
            entry |= {"MessageGroupId": row.group_id, "MessageDeduplicationId": row.dedup_id}
        return entry


def plan_batches(rows: Sequence[Row[Any]], max_bytes: int = MAX_BATCH_BYTES
                 ) -> list[tuple[str, list[Row[Any]]]]:
    """Split pending rows (in id order) into batch calls that cannot reorder a group.

    A batch holds at most 10 rows adding up to at most `max_bytes`. A FIFO group contributes at
    most one row per batch call: if an entry of a batch failed while a later entry of the same
    group succeeded, the group would be out of order. Rows without a group (the topic) fill
    batches freely.
    """
    batches: list[tuple[str, list[Row[Any]]]] = []
    open_batch: dict[str, list[Row[Any]]] = {}
    sizes: dict[str, int] = {}
    groups_in: dict[str, set[str]] = {}
    for row in rows:
        batch = open_batch.get(row.destination)
        groups = groups_in.setdefault(row.destination, set())
        size = row_size(row)
        if (batch is None or len(batch) == BATCH or sizes[row.destination] + size > max_bytes
                or (row.group_id and row.group_id in groups)):
            batch = open_batch[row.destination] = []
            sizes[row.destination] = 0
            groups.clear()
            batches.append((row.destination, batch))
        batch.append(row)
        sizes[row.destination] += size
        if row.group_id:
            groups.add(row.group_id)
    return batches


class Relay:
    """Publishes pending outbox rows; on PostgreSQL several relays may run at once.

    A row refused for now waits in backoff (`next_attempt_at`); a row refused for ever is set
    aside as dead with its reason, logged once, and retried only by `school outbox retry`. Either
    holds back the rest of its own FIFO group, to keep the group's order, and nothing else: the
    read window skips such groups in SQL, so blocked rows can never fill it.
    """

    def __init__(self, engine: Engine, table: Table, publisher: Publisher, *,
                 backoff: Backoff | None = None, fetch: int = 100,
                 retention: timedelta = timedelta(hours=24),
                 row_backoff: Backoff | None = None) -> None:
        self.engine, self.table, self.publisher = engine, table, publisher
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.row_backoff = row_backoff or Backoff(base=1.0, cap=300.0)
        self.fetch, self.retention = fetch, retention
        self.failures = 0  # consecutive failed passes; reset by a successful one
        # PostgreSQL: rows are locked FOR UPDATE while published, so a second relay waits and then
        # skips what the first published. SQLite has no row locks: run one relay per database.
        self._locks_rows = engine.dialect.name == "postgresql"

    def run_once(self) -> int:
        """Publish what is pending now; return how many rows were published.

        Rows already accepted are marked published even when a later batch call fails; the
        failure is raised after that commit, so the caller backs off.
        """
        if self._locks_rows:
            with self.engine.begin() as conn:
                rows = self._pending(conn, lock=True)
                published, error = self._publish(rows, conn.execute)
        else:
            with self.engine.begin() as conn:
                rows = self._pending(conn, lock=False)
            published, error = self._publish(rows, self._mark_in_own_transaction)
        if error is not None:
            raise error
        return published

    def _pending(self, conn: Any, *, lock: bool) -> Sequence[Row[Any]]:
        """The next rows to publish, without any row of a group held by a waiting or dead row."""
        t, now = self.table, datetime.now(UTC)
        held = self.table.alias("held")
        holds_group = (select(held.c.id).where(
            held.c.destination == t.c.destination, held.c.group_id == t.c.group_id,
            held.c.published_at.is_(None),
            or_(held.c.dead_at.is_not(None), held.c.next_attempt_at > now)).exists())
        query = (select(t).where(
            t.c.published_at.is_(None), t.c.dead_at.is_(None),
            or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
            or_(t.c.group_id.is_(None), ~holds_group))
            .order_by(t.c.id).limit(self.fetch))
        if lock:
            query = query.with_for_update(of=t)
        return conn.execute(query).all()

    def _publish(self, rows: Sequence[Row[Any]], execute: Callable[[Any], Any]
                 ) -> tuple[int, Exception | None]:
        blocked: set[tuple[str, str]] = set()
        published = 0
        for destination, batch in plan_batches(rows):
            batch = [r for r in batch if (r.destination, r.group_id) not in blocked]
            if not batch:
                continue
            try:
                result = self.publisher.send(destination, batch)
            except (BotoCoreError, ClientError) as exc:
                return published, exc
            self._record(batch, result, execute)
            # A refused row holds back the rest of its FIFO group: order is kept, nothing skipped.
            blocked |= {(r.destination, r.group_id) for r in batch
                        if r.id not in result.sent and r.group_id is not None}
            published += len(result.sent)
        return published, None

    def _record(self, batch: list[Row[Any]], result: SendResult,
                execute: Callable[[Any], Any]) -> None:
        t, now = self.table, datetime.now(UTC)
        if result.sent:
            execute(update(t).where(t.c.id.in_(result.sent)).values(
                published_at=now, attempts=t.c.attempts + 1, next_attempt_at=None))
        by_id = {r.id: r for r in batch}
        for row_id, reason in result.dead.items():
            execute(update(t).where(t.c.id == row_id).values(
                dead_at=now, last_error=reason, attempts=t.c.attempts + 1))
            row = by_id[row_id]
            log.error("outbox row %s (%s to %s, group %s) refused for ever, set aside: %s",
                      row_id, row.event_type, row.destination, row.group_id, reason,
                      extra={"outcome": "outbox_dead", "event_id": row.event_id})
        for row_id, reason in result.deferred.items():
            row = by_id[row_id]
            delay = self.row_backoff.delay(row.attempts + 1)
            execute(update(t).where(t.c.id == row_id).values(
                next_attempt_at=now + timedelta(seconds=delay), last_error=reason,
                attempts=t.c.attempts + 1))
            log.warning("outbox row %s refused for now, retry in %.1f s: %s", row_id, delay,
                        reason, extra={"outcome": "outbox_deferred", "event_id": row.event_id})

    def _mark_in_own_transaction(self, statement: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

    def dead_rows(self) -> int:
        """How many rows are set aside as dead (the gauge the AWS alarm watches)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.table).where(
                self.table.c.dead_at.is_not(None),
                self.table.c.published_at.is_(None))).scalar_one())

    def report_dead_rows(self) -> int:
        """Log the dead-row count as a JSON field; a CloudWatch metric filter reads it."""
        dead = self.dead_rows()
        level = logging.ERROR if dead else logging.INFO
        log.log(level, "outbox: %d dead row(s)%s", dead,
                "; see `school outbox list`" if dead else "",
                extra={"outcome": "outbox_dead_rows", "dead_rows": dead})
        return dead

    def purge(self) -> int:
        """Delete rows published longer ago than the retention."""
        cutoff = datetime.now(UTC) - self.retention
        with self.engine.begin() as conn:
            result = conn.execute(delete(self.table).where(
                self.table.c.published_at.is_not(None), self.table.c.published_at < cutoff))
        return int(result.rowcount or 0)

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        """Relay until `stop` is set, backing off while SQS or SNS is unreachable."""
        self.failures = 0
        while not stop.is_set():
            try:
                published = self.run_once()
                self.failures = 0
            except (BotoCoreError, ClientError, OperationalError) as exc:
                # OperationalError: the database is unreachable; the rows wait there, unlost.
                self.failures += 1
                delay = self.backoff.delay(self.failures)
                log.warning("relay cannot publish (%s); retrying in %.1f s", exc, delay,
                            extra={"outcome": "relay_backoff"})
                stop.wait(delay)
                continue
            if published:
                log.info("relayed %d messages", published, extra={"outcome": "relayed"})
            else:
                stop.wait(interval)
