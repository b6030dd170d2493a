"""The operations console: the topology, the dead-letter queues and every
conversation, on one live page."""
