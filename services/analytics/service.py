"""The analytics service: counts every event of the topic exactly once. The topic carries ids,
never a name, an email or a payment token (those travel as private messages, shared.topology)."""

from services.analytics import api, handlers, tables
from shared.events import CATALOGUE
from shared.service import Service
from shared.topology import TOPOLOGY

SERVICE = Service(
    "analytics", tables.metadata,
    consumes={event_type: handlers.count
              for event_type in TOPOLOGY.on_topic(CATALOGUE.event_types())},
    on_duplicate=handlers.duplicate,
    routes=api.routes,
)
