"""The inbox: one row per (consumer, event_id), inserted first in the handler's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.envelope import Envelope


@dataclass(frozen=True)
class Inbox:
    table: Table
    consumer: str

    def claim(self, session: Session, envelope: Envelope) -> bool:
        """Record the event as handled; False if this consumer already handled it.

        On PostgreSQL a concurrent claim of the same event waits on the primary key until the
        first transaction ends, then fails here: exactly one of them applies the effects.
        """
        try:
            with session.begin_nested():
                session.execute(insert(self.table).values(
                    consumer=self.consumer, event_id=envelope.event_id,
                    event_type=envelope.event_type, handled_at=datetime.now(UTC)))
        except IntegrityError:
            return False
        return True

    def purge(self, engine: Engine, keep: timedelta) -> int:
        """Delete rows older than `keep`, which must outlast the DLQ's 14-day retention so a
        redriven duplicate is still recognised (DESIGN section 5)."""
        cutoff = datetime.now(UTC) - keep
        with engine.begin() as conn:
            result = conn.execute(delete(self.table).where(self.table.c.handled_at < cutoff))
        return int(result.rowcount or 0)
