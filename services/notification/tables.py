"""The notification service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.tables import attempts_table, inbox_table

metadata = MetaData()
inbox = inbox_table(metadata)
attempts = attempts_table(metadata)

# A projection of student.registered: the only student data this service keeps.
contacts = Table(
    "contacts", metadata,
    Column("student_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)

# One row per (event, recipient); the sender delivers `pending` rows whose contact is known.
notifications = Table(
    "notifications", metadata,
    Column("id", String(64), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("correlation_id", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("data", Text, nullable=False),  # the event's data (JSON), rendered when sent
    Column("status", String(10), nullable=False),  # pending, sent
    Column("recipient", String(320), nullable=True),  # the address it was sent to
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", String(500), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("event_id", "student_id", name="uq_notifications_event_recipient"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_student", "student_id", "created_at"),
)
