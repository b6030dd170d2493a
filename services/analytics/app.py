"""The analytics API's app factory (gunicorn: `services.analytics.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.analytics import api, tables
from shared import web
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    return web.service_app("analytics", [api.blp], settings, inbox=tables.inbox)
