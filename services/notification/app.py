"""The notification API's app factory (gunicorn: `services.notification.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.notification import api, tables
from shared import web
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    return web.service_app("notification", [api.blp], settings, inbox=tables.inbox)
