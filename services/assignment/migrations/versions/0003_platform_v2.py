"""platform tables v2: outbox backoff and dead rows, handler attempts

Revision ID: assignment_0003
Revises: assignment_0002
"""

from shared.migrations import downgrade_platform_tables_v2, upgrade_platform_tables_v2

revision = "assignment_0003"
down_revision = "assignment_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_platform_tables_v2(outbox=True)


def downgrade() -> None:
    downgrade_platform_tables_v2(outbox=True)
