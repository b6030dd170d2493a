"""idempotency keys v2: the body as JSON, created_at indexed for the purge"""

from shared.migrations import idempotency_table_v2

revision = "enrollment_0004"
down_revision = "enrollment_0003"
upgrade, downgrade = idempotency_table_v2()
