"""notifications.data as JSON"""

from shared.migrations import text_to_json

revision = "notification_0004"
down_revision = "notification_0003"
upgrade, downgrade = text_to_json("notifications", "data")
