"""The analytics worker's handlers: every event is counted once, in the inbox's transaction.

`count` takes every event type of the catalogue (service.py), so a new event type is counted the
day it is registered. Duplicates are absorbed by the inbox and counted by `duplicate`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from services.analytics import domain
from services.analytics.tables import counters, event_counts, grades, revenue
from shared import db
from shared.handling import Context


def add(session: Session, table: Table, key: str, amount: int) -> None:
    """`value += amount` for one key, creating the row at `amount`: an atomic upsert, so
    concurrent handlers on PostgreSQL never lose an increment."""
    key_column, value_column = (c.name for c in table.columns)
    session.execute(db.upsert(session.get_bind().dialect.name, table,
                              {key_column: key, value_column: amount}, [key_column],
                              {value_column: table.c[value_column] + amount}))


def count(ctx: Context) -> None:
    event = ctx.event
    add(ctx.session, event_counts, event.event_type, 1)
    change = domain.revenue_change(event.event_type, event.data)
    if change is not None:
        add(ctx.session, revenue, *change)
    if event.event_type == "submission.graded":
        data = event.data
        ctx.session.execute(insert(grades).values(
            event_id=event.event_id, submission_id=data["submission_id"],
            assignment_id=data["assignment_id"], student_id=data["student_id"],
            version=data["version"], score=data["score"], max_score=data["max_score"],
            graded_at=datetime.fromisoformat(event.occurred_at)))


def duplicate(ctx: Context) -> None:
    add(ctx.session, counters, domain.DUPLICATES, 1)
