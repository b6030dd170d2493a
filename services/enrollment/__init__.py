"""The enrollment service (DESIGN section 2)."""
