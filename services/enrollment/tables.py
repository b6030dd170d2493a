"""The enrollment service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from shared.tables import attempts_table, idempotency_table, inbox_table, outbox_table

metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
attempts = attempts_table(metadata)
idempotency_keys = idempotency_table(metadata)

students = Table(
    "students", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

courses = Table(
    "courses", metadata,
    Column("id", String(64), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("seats_taken", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="ck_courses_seats"),
)

HOLDING = ("pending_payment", "active", "cancelling")  # states that hold a seat

enrollments = Table(
    "enrollments", metadata,
    Column("id", String(64), primary_key=True),
    Column("student_id", String(64), ForeignKey("students.id"), nullable=False),
    Column("course_id", String(64), ForeignKey("courses.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("cancel_reason", String(30), nullable=True),
    Column("refunded", Boolean, nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # One seat-holding enrollment per student and course, enforced by the database itself so
    # that concurrent requests cannot both pass the check.
    Index("uq_enrollments_holding", "student_id", "course_id", unique=True,
          sqlite_where=text("status IN ('pending_payment', 'active', 'cancelling')"),
          postgresql_where=text("status IN ('pending_payment', 'active', 'cancelling')")),
    Index("ix_enrollments_student", "student_id"),
)
