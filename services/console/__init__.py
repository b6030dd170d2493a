"""The operations console (issue 17): the topology, the dead-letter queues and every
conversation, on one live page."""
