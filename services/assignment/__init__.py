"""The assignment service (DESIGN section 2)."""
