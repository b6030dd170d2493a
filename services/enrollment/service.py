"""The enrollment service: students, courses and enrollments; the saga's owner."""

from services.enrollment import api, handlers, tables
from shared.service import Service

SERVICE = Service(
    "enrollment", tables.metadata,
    consumes={"payment.succeeded": handlers.payment_succeeded,
              "payment.failed": handlers.payment_failed,
              "payment.refunded": handlers.payment_refunded},
    routes=api.routes,
)
