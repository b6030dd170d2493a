"""The notification service: keeps students' contacts and emails them what happened."""

from services.notification import api, domain, handlers, mail, sender, tables
from shared.service import Service

SERVICE = Service(
    "notification", tables.metadata,
    consumes={domain.CONTACT_EVENT: handlers.contact_recorded,
              domain.REGISTERED_EVENT: handlers.registered,
              **{event_type: handlers.notify for event_type in domain.EMAIL_EVENTS}},
    routes=api.routes,
    jobs={"sender": sender.job},
    resources=lambda settings: mail.templates(),  # handlers try them; the sender sends with them
)
