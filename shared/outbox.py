"""The transactional outbox and its relay: an event leaves only if its change committed.

A service writes its change and its outgoing messages in one transaction (`Outbox.add`); the relay
publishes pending rows in order per destination and group, up to 10 and 256 KiB per batch call,
marks them published, and never drops an unpublished row: a row SQS refuses for ever is kept as a
dead row, with its reason, until an operator retries it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine, Row, Table, delete, event, func, insert, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared import telemetry
from shared.backoff import Backoff
from shared.db import utc
from shared.envelope import Envelope
from shared.publisher import BATCH, Publisher, SendResult, plan_batches
from shared.topology import Topology

log = logging.getLogger(__name__)
WRITTEN = "outbox_written"  # a session's info key: it wrote outbox rows


@dataclass(frozen=True)
class Outbox:
    """Writes an event's messages, routed by the topology, inside the caller's transaction."""

    table: Table
    topology: Topology

    def add(self, session: Session, envelope: Envelope) -> None:
        # Refuse an oversized event now, in the request, not in the relay; with the room its
        # traceparent may take, traced here or not.
        envelope.check_size(envelope.attributes() | telemetry.RESERVED)
        rows = ([self._row(self.topology.topic.name, None, envelope, "aws.sns")]
                if self.topology.published(envelope.event_type) else [])
        for queue in self.topology.direct_destinations(envelope.event_type):
            rows.append(self._row(queue.name, queue.group_id(envelope.data), envelope, "aws_sqs"))
        session.execute(insert(self.table), rows)
        session.info[WRITTEN] = True  # the runtime wakes its relay once this commits

    @staticmethod
    def _row(destination: str, group_id: str | None, envelope: Envelope, system: str
             ) -> dict[str, Any]:
        # The creation context travels with the row, so the trace goes on when the relay publishes.
        attributes = envelope.attributes() | telemetry.created(destination, system, {
            "correlation_id": envelope.correlation_id, "event_type": envelope.event_type,
            "event_id": envelope.event_id, "causation_id": envelope.causation_id,
            "data": envelope.data}, group_id)
        return {
            "destination": destination, "group_id": group_id, "dedup_id": envelope.event_id,
            "event_id": envelope.event_id, "event_type": envelope.event_type,
            "body": envelope.body(), "attributes": json.dumps(attributes),
            "created_at": datetime.now(UTC), "attempts": 0,
        }


@telemetry.guarded(None)
def telemetry_outcomes(spans: list[Any], batch: list[Row[Any]], result: SendResult) -> None:
    """What the call made of each row, on its `send` span."""
    for span, row in zip(spans, batch, strict=True):
        if row.id in result.sent:
            if message_id := result.ids.get(row.id):
                span.set_attribute("messaging.message.id", message_id)
        elif row.id in result.dead:
            span.add_event("dead_row", {"reason": result.dead[row.id]})
            span.set_status(telemetry.Status(telemetry.StatusCode.ERROR, "refused for ever"))
        else:
            span.add_event("deferred", {"reason": result.deferred.get(row.id, "")})


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
                 row_backoff: Backoff | None = None, linger: float = 0.0) -> None:
        self.engine, self.table, self.publisher = engine, table, publisher
        # Rows younger than `linger` wait for more while no destination has a whole batch of
        # them: under a burst a call carries 10 rows, not the few of one commit.
        self.linger, self.hold_for = linger, 0.0
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.row_backoff = row_backoff or Backoff(base=1.0, cap=300.0)
        self.fetch, self.retention = fetch, retention
        self.failures = 0  # consecutive failed passes; reset by a successful one
        self._wake = threading.Event()
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
                if self._wait_for_more(rows):
                    return 0
                published, error = self._publish(rows, conn.execute)
        else:
            with self.engine.begin() as conn:
                rows = self._pending(conn, lock=False)
            if self._wait_for_more(rows):
                return 0
            published, error = self._publish(rows, self._mark_in_own_transaction)
        if error is not None:
            raise error
        return published

    def _wait_for_more(self, rows: Sequence[Row[Any]]) -> bool:
        """Whether to leave `rows` for a moment: all younger than the linger, and no
        destination with a whole batch. Sets `hold_for`, the wait until the oldest is due."""
        self.hold_for = 0.0
        if not self.linger or not rows:
            return False
        per_destination = Counter(r.destination for r in rows)
        if max(per_destination.values()) >= BATCH:
            return False
        now = datetime.now(UTC)
        oldest = min(utc(r.created_at) for r in rows)
        self.hold_for = self.linger - (now - oldest).total_seconds()
        return self.hold_for > 0

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
                with self.publisher.tracing(destination, batch) as spans:
                    result = self.publisher.send(destination, batch)
                    self._record(batch, result, execute)
                    telemetry_outcomes(spans, batch, result)
            except (BotoCoreError, ClientError) as exc:
                return published, exc
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

    def backlog(self) -> tuple[int, float]:
        """Rows waiting to be published (dead ones not counted), and the age in seconds of the
        oldest of them (0 when none waits)."""
        t = self.table
        with self.engine.connect() as conn:
            count, oldest = conn.execute(select(func.count(), func.min(t.c.created_at)).where(
                t.c.published_at.is_(None), t.c.dead_at.is_(None))).one()
        age = (datetime.now(UTC) - utc(oldest)).total_seconds() if oldest is not None else 0.0
        return int(count), max(age, 0.0)

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

    def wake(self) -> None:
        """Publish now rather than after the pause: rows were just committed in this process."""
        self._wake.set()

    def wake_on_commit(self, sessions: sessionmaker[Session]) -> None:
        """Wake this relay when a session of `sessions` commits outbox rows: a
        handler's events leave at once instead of after the polling pause. Rows committed by
        another process (the API's) are still found by polling every `interval`."""
        def committed(session: Session) -> None:
            if session.info.pop(WRITTEN, False):
                self.wake()

        def rolled_back(session: Session) -> None:
            session.info.pop(WRITTEN, None)

        event.listen(sessions, "after_commit", committed)
        event.listen(sessions, "after_rollback", rolled_back)

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
            elif self.hold_for > 0:
                stop.wait(self.hold_for)
            elif not stop.is_set():
                self._wake.wait(interval)
                self._wake.clear()
