"""The enrollment service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    text,
)

from services.enrollment.domain import HOLDING
from shared.tables import key, platform_metadata, ref, timestamp

metadata = platform_metadata(outbox=True, idempotency=True)
idempotency_keys = metadata.tables["idempotency_keys"]

students = Table(
    "students", metadata,
    key(),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    timestamp("created_at"),
)

courses = Table(
    "courses", metadata,
    key(),
    Column("title", String(200), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("seats_taken", Integer, nullable=False),
    timestamp("created_at"),
    CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="ck_courses_seats"),
)

_holds_a_seat = text("status IN (" + ", ".join(f"'{state}'" for state in HOLDING) + ")")

enrollments = Table(
    "enrollments", metadata,
    key(),
    ref("student_id", ForeignKey("students.id")),
    ref("course_id", ForeignKey("courses.id")),
    Column("status", String(20), nullable=False),  # a state of services.enrollment.domain
    Column("cancel_reason", String(30), nullable=True),
    Column("refunded", Boolean, nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    timestamp("created_at"),
    timestamp("updated_at"),
    # One seat-holding enrollment per student and course, enforced by the database itself so
    # that concurrent requests cannot both pass the check.
    Index("uq_enrollments_holding", "student_id", "course_id", unique=True,
          sqlite_where=_holds_a_seat, postgresql_where=_holds_a_seat),
    Index("ix_enrollments_student", "student_id"),
)
