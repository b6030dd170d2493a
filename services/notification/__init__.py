"""The notification service: the emails a student is sent, and what became of each."""
