"""The retry budget's ledger: failed handler attempts per (consumer, event).

SQS counts receives, and a FIFO message handed back untried (held behind a failed message of its
group) is received again all the same, so a budget of receives dead-letters messages that were
never tried. This ledger counts what the budget is about: handler attempts that
failed. A failure is written in its own short transaction, after the handler's transaction rolled
back; success writes nothing, so the common path costs nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared import db


class Attempts(Protocol):
    """What the consumer needs of the ledger."""

    def failed(self, event_id: str, error: str) -> int:
        """Record one failed attempt; return how many have failed so far."""
        ...

    def forget(self, event_id: str) -> None:
        """Drop the count, once the message has left the queue (dead-lettered)."""
        ...


@dataclass(frozen=True)
class AttemptLedger:
    engine: Engine
    table: Table
    consumer: str

    def failed(self, event_id: str, error: str) -> int:
        t, now = self.table, datetime.now(UTC)
        key = (t.c.consumer == self.consumer) & (t.c.event_id == event_id)
        for _ in range(2):  # a concurrent first insert of the same key: then update it
            with db.writer(self.engine).begin() as conn:
                bumped = conn.execute(update(t).where(key).values(
                    failures=t.c.failures + 1, last_error=error[:1000], updated_at=now))
                if not bumped.rowcount:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(t).values(
                                consumer=self.consumer, event_id=event_id, failures=1,
                                last_error=error[:1000], updated_at=now))
                    except IntegrityError:
                        continue
                return int(conn.execute(select(t.c.failures).where(key)).scalar_one())
        raise RuntimeError(f"could not record a failed attempt of {event_id}")

    def forget(self, event_id: str) -> None:
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.consumer == self.consumer, t.c.event_id == event_id))

    def purge(self, keep: timedelta) -> int:
        """Drop counts of events not failed for `keep` (they were handled or left the queue)."""
        cutoff = datetime.now(UTC) - keep
        with self.engine.begin() as conn:
            result = conn.execute(delete(self.table).where(self.table.c.updated_at < cutoff))
        return int(result.rowcount or 0)
