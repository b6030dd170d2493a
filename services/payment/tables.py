"""The payment service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table

from shared.tables import key, platform_metadata, ref, timestamp

metadata = platform_metadata(outbox=True)

payments = Table(
    "payments", metadata,
    key(),
    ref("enrollment_id", unique=True),
    ref("student_id"),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("failure_reason", String(200), nullable=True),
    timestamp("created_at"),
    timestamp("updated_at"),
)
