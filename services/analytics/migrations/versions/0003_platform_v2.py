"""platform tables v2: outbox backoff and dead rows, handler attempts

Revision ID: analytics_0003
Revises: analytics_0002
"""

from shared.migrations import downgrade_platform_tables_v2, upgrade_platform_tables_v2

revision = "analytics_0003"
down_revision = "analytics_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_platform_tables_v2(outbox=False)


def downgrade() -> None:
    downgrade_platform_tables_v2(outbox=False)
