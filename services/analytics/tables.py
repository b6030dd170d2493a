"""The analytics service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, MetaData, String, Table

from shared.tables import attempts_table, inbox_table

metadata = MetaData()
inbox = inbox_table(metadata)
attempts = attempts_table(metadata)

# Counters, one row per key, updated with an upsert in the handler's transaction.
event_counts = Table(
    "event_counts", metadata,
    Column("event_type", String(100), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
revenue = Table(
    "revenue", metadata,
    Column("currency", String(3), primary_key=True),
    Column("net_cents", BigInteger, nullable=False),  # charged minus refunded
)
counters = Table(
    "counters", metadata,
    Column("name", String(100), primary_key=True),  # duplicates_absorbed
    Column("value", BigInteger, nullable=False),
)

# Facts: one row per graded submission version, for averages over any slice later.
grades = Table(
    "grades", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("submission_id", String(64), nullable=False),
    Column("assignment_id", String(64), nullable=False, index=True),
    Column("student_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("max_score", Integer, nullable=False),
    Column("graded_at", DateTime(timezone=True), nullable=False),
)
