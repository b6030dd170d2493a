"""The analytics service: counts every event of the topic exactly once."""

from services.analytics import api, handlers, tables
from shared.events import CATALOGUE
from shared.service import Service

SERVICE = Service(
    "analytics", tables.metadata,
    consumes={event_type: handlers.count for event_type in CATALOGUE.event_types()},
    on_duplicate=handlers.duplicate,
    routes=api.routes,
)
