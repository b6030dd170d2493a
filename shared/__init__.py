"""The platform every service stands on: events, topology, outbox, inbox, consumer runtime."""
