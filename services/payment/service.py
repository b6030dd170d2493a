"""The payment service: charges and refunds through the (simulated) gateway."""

from services.payment import api, gateway, handlers, simulator, tables
from shared.service import Service

SERVICE = Service(
    "payment", tables.metadata,
    consumes={"charge.requested": handlers.charge_requested,
              "refund.requested": handlers.refund_requested},
    routes=api.routes,
    resources=gateway.from_settings,  # handlers get it as ctx.resources
    simulator=simulator.SIMULATOR,
)
