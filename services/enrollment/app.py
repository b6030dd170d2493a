"""The enrollment API's app factory (gunicorn: `services.enrollment.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.enrollment import api, tables
from shared import web
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    return web.service_app("enrollment", [api.blp], settings,
                           outbox=tables.outbox, inbox=tables.inbox)
