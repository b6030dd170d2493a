"""What the analytics API does: read the summary, every figure from one snapshot."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, select

from services.analytics import domain
from services.analytics.tables import counters, event_counts, grades, revenue


def summary(engine: Engine) -> dict[str, Any]:
    """Every figure from one snapshot, so they agree with each other."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return _summary(conn)


def _summary(conn: Connection) -> dict[str, Any]:
    by_type = {row.event_type: row.count for row in conn.execute(
        select(event_counts).order_by(event_counts.c.event_type))}
    money = {row.currency: row.net_cents for row in conn.execute(
        select(revenue).order_by(revenue.c.currency))}
    average = conn.execute(select(func.avg(grades.c.score))).scalar_one()
    duplicates = conn.execute(select(counters.c.value).where(
        counters.c.name == domain.DUPLICATES)).scalar_one_or_none()
    return {"events_by_type": by_type, "revenue_cents_by_currency": money,
            "average_score": None if average is None else float(average),
            "events_processed": sum(by_type.values()), "duplicates_absorbed": duplicates or 0}
