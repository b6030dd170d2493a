"""The notification service (DESIGN section 2)."""
