"""The transactional outbox and its relay (DESIGN section 5).

A service writes its change and its outgoing messages in one transaction (`Outbox.add`); the relay
publishes pending rows in order per destination and group, up to 10 per batch call, marks them
published, and never drops an unpublished row.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine, Row, Table, delete, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.backoff import Backoff
from shared.envelope import Envelope
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


class Publisher:
    """Sends outbox rows to SNS or SQS in batches; returns the ids SQS or SNS accepted."""

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

    def send(self, destination: str, rows: Sequence[Row[Any]]) -> set[int]:
        target = self.target(destination)
        if destination == self.topology.topic.name:
            entries = [{"Id": str(r.id), "Message": r.body,
                        "MessageAttributes": json.loads(r.attributes)} for r in rows]
            result = self.sns.publish_batch(TopicArn=target, PublishBatchRequestEntries=entries)
        else:
            entries = [self._sqs_entry(r) for r in rows]
            result = self.sqs.send_message_batch(QueueUrl=target, Entries=entries)
        for failed in result.get("Failed", []):
            log.error("outbox row %s refused by %s: %s %s", failed["Id"], destination,
                      failed.get("Code"), failed.get("Message"))
        return {int(ok["Id"]) for ok in result.get("Successful", [])}

    @staticmethod
    def _sqs_entry(row: Row[Any]) -> dict[str, Any]:
        entry = {"Id": str(row.id), "MessageBody": row.body,
                 "MessageAttributes": json.loads(row.attributes)}
        if row.group_id is not None:
            entry |= {"MessageGroupId": row.group_id, "MessageDeduplicationId": row.dedup_id}
        return entry


def plan_batches(rows: Sequence[Row[Any]]) -> list[tuple[str, list[Row[Any]]]]:
    """Split pending rows (in id order) into batch calls that cannot reorder a group.

    A FIFO group contributes at most one row per batch call: if an entry of a batch failed while a
    later entry of the same group succeeded, the group would be out of order. Rows without a
    group (the topic) fill batches freely.
    """
    batches: list[tuple[str, list[Row[Any]]]] = []
    open_batch: dict[str, list[Row[Any]]] = {}
    groups_in: dict[str, set[str]] = {}
    for row in rows:
        batch = open_batch.get(row.destination)
        groups = groups_in.setdefault(row.destination, set())
        if batch is None or len(batch) == BATCH or (row.group_id and row.group_id in groups):
            batch = open_batch[row.destination] = []
            groups.clear()
            batches.append((row.destination, batch))
        batch.append(row)
        if row.group_id:
            groups.add(row.group_id)
    return batches


class Relay:
    """Publishes pending outbox rows; on PostgreSQL several relays may run at once."""

    def __init__(self, engine: Engine, table: Table, publisher: Publisher, *,
                 backoff: Backoff | None = None, fetch: int = 100,
                 retention: timedelta = timedelta(hours=24)) -> None:
        self.engine, self.table, self.publisher = engine, table, publisher
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
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
        query = (select(self.table).where(self.table.c.published_at.is_(None))
                 .order_by(self.table.c.id).limit(self.fetch))
        if lock:
            query = query.with_for_update()
        return conn.execute(query).all()

    def _publish(self, rows: Sequence[Row[Any]], execute: Callable[[Any], Any]
                 ) -> tuple[int, Exception | None]:
        blocked: set[tuple[str, str | None]] = set()
        published = 0
        for destination, batch in plan_batches(rows):
            batch = [r for r in batch if (r.destination, r.group_id) not in blocked]
            if not batch:
                continue
            try:
                sent = self.publisher.send(destination, batch)
            except (BotoCoreError, ClientError) as exc:
                return published, exc
            now = datetime.now(UTC)
            if sent:
                execute(update(self.table).where(self.table.c.id.in_(sent)).values(
                    published_at=now, attempts=self.table.c.attempts + 1))
            failed = [r for r in batch if r.id not in sent]
            if failed:
                execute(update(self.table).where(self.table.c.id.in_([r.id for r in failed]))
                        .values(attempts=self.table.c.attempts + 1))
            # A refused row holds back the rest of its group (and, for the topic, the rest of
            # the topic's rows) until it goes through: order is kept, nothing is skipped.
            blocked |= {(r.destination, r.group_id) for r in failed}
            published += len(sent)
        return published, None

    def _mark_in_own_transaction(self, statement: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

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
