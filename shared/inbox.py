"""The inbox: one row per (consumer, event_id), inserted first in the handler's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.envelope import Envelope


@dataclass(frozen=True)
class Inbox:
    table: Table
    consumer: str

    def claim(self, session: Session, envelope: Envelope) -> bool:
        """Record the event as handled; False if this consumer already handled it.

        INSERT ... ON CONFLICT DO NOTHING, on both databases: no savepoint is needed to survive
        the duplicate, which a batch of messages in one transaction would pay for each message
        (issue 13). On PostgreSQL a concurrent claim of the same event waits on the primary key
        until the first transaction ends, then inserts nothing: exactly one applies the effects.
        """
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        inserted = session.execute(dialect.insert(self.table).values(
            consumer=self.consumer, event_id=envelope.event_id,
            event_type=envelope.event_type, handled_at=datetime.now(UTC),
        ).on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(self.table.c.event_id))
        # RETURNING, not rowcount: psycopg reports 1 for a row the conflict skipped.
        return inserted.first() is not None

    def purge(self, engine: Engine, keep: timedelta) -> int:
        """Delete rows older than `keep`, which must outlast the DLQ's 14-day retention so a
        redriven duplicate is still recognised (DESIGN section 5)."""
        cutoff = datetime.now(UTC) - keep
        with engine.begin() as conn:
            result = conn.execute(delete(self.table).where(self.table.c.handled_at < cutoff))
        return int(result.rowcount or 0)
