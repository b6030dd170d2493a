"""The assignment service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.tables import attempts_table, idempotency_table, inbox_table, outbox_table

metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
attempts = attempts_table(metadata)
idempotency_keys = idempotency_table(metadata)

assignments = Table(
    "assignments", metadata,
    Column("id", String(64), primary_key=True),
    Column("course_id", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("max_score", Integer, nullable=False),
    Column("keywords", Text, nullable=False),  # a JSON list
    Column("due_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

submissions = Table(
    "submissions", metadata,
    Column("id", String(64), primary_key=True),
    Column("assignment_id", String(64), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("score", Float, nullable=True),
    Column("plagiarism_score", Float, nullable=True),
    Column("flagged", Boolean, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("graded_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("assignment_id", "student_id", "version", name="uq_submission_version"),
    Index("ix_submissions_assignment", "assignment_id", "student_id"),
)

# Faults a test or the demo injects into grading (only with SCHOOL_SIMULATOR_CONTROLS=1).
grader_faults = Table(
    "grader_faults", metadata,
    Column("student_id", String(64), primary_key=True),
)
