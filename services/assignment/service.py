"""The assignment service: assignments, submissions, and grading in order per student."""

from services.assignment import api, handlers, simulator, tables
from shared.service import Service

SERVICE = Service(
    "assignment", tables.metadata,
    consumes={"submission.received": handlers.submission_received},
    routes=api.routes,
    simulator=simulator.SIMULATOR,
)
