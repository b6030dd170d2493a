"""The analytics API's app factory (gunicorn: `services.analytics.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.analytics import api, tables
from shared import logs, web
from shared.runtime import Runtime
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure("analytics", settings.log_level)
    runtime = Runtime.build("analytics", inbox=tables.inbox, settings=settings)
    app = web.create_app("analytics", [api.blp], runtime.ready_checks())
    app.extensions["runtime"] = runtime
    return app
