"""The analytics service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, String, Table

from shared.tables import key, platform_metadata, ref, timestamp

metadata = platform_metadata(outbox=False)

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
    key("event_id"),
    ref("submission_id"),
    ref("assignment_id", index=True),
    ref("student_id"),
    Column("version", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("max_score", Integer, nullable=False),
    timestamp("graded_at"),
)
