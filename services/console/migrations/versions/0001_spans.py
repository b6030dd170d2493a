"""the console's store: spans and conversation keys"""

import sqlalchemy as sa
from alembic import op

revision = "console_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "spans",
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.String(16), nullable=True),
        sa.Column("service", sa.String(50), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("event_type", sa.String(100), nullable=True),
        sa.Column("causation_id", sa.String(64), nullable=True),
        sa.Column("destination", sa.String(200), nullable=True),
        sa.Column("group_id", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_spans_trace_id", "spans", ["trace_id"])
    op.create_index("ix_spans_correlation_id", "spans", ["correlation_id"])
    op.create_index("ix_spans_started_at", "spans", ["started_at"])
    op.create_index("ix_spans_correlation_started", "spans", ["correlation_id", "started_at"])
    op.create_table(
        "conversation_keys",
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("correlation_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_conversation_keys_seen_at", "conversation_keys", ["seen_at"])


def downgrade() -> None:
    op.drop_table("conversation_keys")
    op.drop_table("spans")
