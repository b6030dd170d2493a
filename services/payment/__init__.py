"""The payment service (DESIGN section 2)."""
