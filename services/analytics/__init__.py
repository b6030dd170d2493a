"""The analytics service (DESIGN section 2)."""
