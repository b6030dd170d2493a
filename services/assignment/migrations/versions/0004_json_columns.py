"""idempotency keys v2 (the body as JSON, created_at indexed) and assignments.keywords as JSON"""

from shared.migrations import chain, idempotency_table_v2, text_to_json

revision = "assignment_0004"
down_revision = "assignment_0003"
upgrade, downgrade = chain(idempotency_table_v2(), text_to_json("assignments", "keywords"))
