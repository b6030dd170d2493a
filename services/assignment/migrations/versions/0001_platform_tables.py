"""platform tables: outbox and inbox (shared.migrations.platform_v1)"""

from shared.migrations import platform_v1

revision = "assignment_0001"
down_revision = None
upgrade, downgrade = platform_v1(outbox=True)
