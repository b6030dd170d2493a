"""platform tables: inbox

Revision ID: analytics_0001
Revises:
"""

from shared.migrations import create_platform_tables_v1, drop_platform_tables_v1

revision = "analytics_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables_v1(outbox=False, inbox=True)


def downgrade() -> None:
    drop_platform_tables_v1()
