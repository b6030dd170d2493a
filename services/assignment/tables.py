"""The assignment service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.tables import key, platform_metadata, ref, timestamp

metadata = platform_metadata(outbox=True, idempotency=True)
idempotency_keys = metadata.tables["idempotency_keys"]

assignments = Table(
    "assignments", metadata,
    key(),
    ref("course_id"),
    Column("title", String(200), nullable=False),
    Column("max_score", Integer, nullable=False),
    Column("keywords", JSON, nullable=False),  # a list of strings
    timestamp("due_at", nullable=True),
    timestamp("created_at"),
    # The subject of the instructor who created it (None before sign-in existed).
    Column("created_by", String(64), nullable=True),
)

submissions = Table(
    "submissions", metadata,
    key(),
    ref("assignment_id"),
    ref("student_id"),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("score", Float, nullable=True),
    Column("plagiarism_score", Float, nullable=True),
    Column("flagged", Boolean, nullable=True),
    timestamp("received_at"),
    timestamp("graded_at", nullable=True),
    UniqueConstraint("assignment_id", "student_id", "version", name="uq_submission_version"),
    Index("ix_submissions_assignment", "assignment_id", "student_id"),
)

# Faults a test or the demo injects into grading (only with SCHOOL_SIMULATOR_CONTROLS=1).
grader_faults = Table("grader_faults", metadata, key("student_id"))
