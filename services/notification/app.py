"""The notification API's app factory (gunicorn: `services.notification.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.notification import api, tables
from shared import logs, web
from shared.runtime import Runtime
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure("notification", settings.log_level)
    runtime = Runtime.build("notification", inbox=tables.inbox, settings=settings)
    app = web.create_app("notification", [api.blp], runtime.ready_checks())
    app.extensions["runtime"] = runtime
    return app
