"""students, courses, enrollments and idempotency keys"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_idempotency_table_v1

revision = "enrollment_0002"
down_revision = "enrollment_0001"

# Frozen: the seat-holding states of this revision (the live ones: enrollment.domain.HOLDING).
HOLDING = sa.text("status IN ('pending_payment', 'active', 'cancelling')")


def upgrade() -> None:
    op.create_table(
        "students",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "courses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("seats_taken", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity",
                           name="ck_courses_seats"),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("student_id", sa.String(64), sa.ForeignKey("students.id"), nullable=False),
        sa.Column("course_id", sa.String(64), sa.ForeignKey("courses.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cancel_reason", sa.String(30), nullable=True),
        sa.Column("refunded", sa.Boolean, nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_enrollments_holding", "enrollments", ["student_id", "course_id"],
                    unique=True, sqlite_where=HOLDING, postgresql_where=HOLDING)
    op.create_index("ix_enrollments_student", "enrollments", ["student_id"])
    create_idempotency_table_v1()


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("enrollments")
    op.drop_table("courses")
    op.drop_table("students")
