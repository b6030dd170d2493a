"""platform tables v2: outbox backoff and dead rows, handler attempts"""

from shared.migrations import platform_v2

revision = "assignment_0003"
down_revision = "assignment_0002"
upgrade, downgrade = platform_v2(outbox=True)
