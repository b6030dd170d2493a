"""The analytics service: counters by event type, revenue by currency, and scores."""
