"""assignments, submissions, grader faults and idempotency keys"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_idempotency_table_v1

revision = "assignment_0002"
down_revision = "assignment_0001"


def upgrade() -> None:
    op.create_table(
        "assignments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("max_score", sa.Integer, nullable=False),
        sa.Column("keywords", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("assignment_id", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("plagiarism_score", sa.Float, nullable=True),
        sa.Column("flagged", sa.Boolean, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("assignment_id", "student_id", "version",
                            name="uq_submission_version"),
    )
    op.create_index("ix_submissions_assignment", "submissions", ["assignment_id", "student_id"])
    op.create_table("grader_faults", sa.Column("student_id", sa.String(64), primary_key=True))
    create_idempotency_table_v1()


def downgrade() -> None:
    for table in ("idempotency_keys", "grader_faults", "submissions", "assignments"):
        op.drop_table(table)
