"""The payment API's app factory (gunicorn: `services.payment.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.payment import api, tables
from services.payment.gateway import SimulatedGateway
from shared import db, web
from shared.settings import Settings


def build_gateway(settings: Settings) -> SimulatedGateway:
    """The simulated gateway keeps its ledger in its own database (`PAYMENT_GATEWAY_...`)."""
    url = db.database_url("payment_gateway", settings)
    db.ensure_database(url)
    return SimulatedGateway(db.make_engine(url))


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    controls = [api.simulator] if settings.simulator_controls else []
    app = web.service_app("payment", [api.blp, *controls], settings,
                          outbox=tables.outbox, inbox=tables.inbox)
    app.extensions["gateway"] = build_gateway(settings)
    return app
