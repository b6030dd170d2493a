"""platform tables: inbox (shared.migrations.platform_v1)"""

from shared.migrations import platform_v1

revision = "notification_0001"
down_revision = None
upgrade, downgrade = platform_v1(outbox=False)
