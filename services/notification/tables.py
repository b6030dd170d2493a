"""The notification service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Integer, String, Table, UniqueConstraint

from shared.tables import key, platform_metadata, ref, timestamp

metadata = platform_metadata(outbox=False)
# A notification's statuses (sender.py says when each is set); `failed` is final.
STATUSES = ("pending", "sent", "failed")

# A projection of student.registered: the only student data this service keeps.
contacts = Table(
    "contacts", metadata,
    key("student_id"),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    timestamp("registered_at"),
)

# One row per (event, recipient); the sender delivers `pending` rows whose contact is known.
notifications = Table(
    "notifications", metadata,
    key(),
    ref("event_id"),
    Column("event_type", String(100), nullable=False),
    ref("student_id"),
    Column("correlation_id", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("data", JSON, nullable=False),  # the event's data, rendered when sent
    Column("status", String(10), nullable=False),  # one of STATUSES
    Column("recipient", String(320), nullable=True),  # the address it was sent to
    Column("attempts", Integer, nullable=False, default=0),
    timestamp("next_attempt_at"),
    Column("last_error", String(500), nullable=True),  # why, without an address (sender.py)
    timestamp("created_at"),
    timestamp("sent_at", nullable=True),
    UniqueConstraint("event_id", "student_id", name="uq_notifications_event_recipient"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_student", "student_id", "created_at"),
)
