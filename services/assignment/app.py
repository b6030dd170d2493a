"""The assignment API's app factory (gunicorn: `services.assignment.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.assignment import api, tables
from shared import web
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    controls = [api.simulator] if settings.simulator_controls else []
    return web.service_app("assignment", [api.blp, *controls], settings,
                           outbox=tables.outbox, inbox=tables.inbox)
