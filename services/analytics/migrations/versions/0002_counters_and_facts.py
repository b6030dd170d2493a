"""counters and facts"""

import sqlalchemy as sa
from alembic import op

revision = "analytics_0002"
down_revision = "analytics_0001"


def upgrade() -> None:
    op.create_table(
        "event_counts",
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "revenue",
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("net_cents", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "grades",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Integer, nullable=False),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_grades_assignment_id", "grades", ["assignment_id"])


def downgrade() -> None:
    op.drop_table("grades")
    op.drop_table("counters")
    op.drop_table("revenue")
    op.drop_table("event_counts")
