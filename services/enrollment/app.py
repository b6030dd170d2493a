"""The enrollment API's app factory (gunicorn: `services.enrollment.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.enrollment import api, tables
from shared import logs, web
from shared.runtime import Runtime
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure("enrollment", settings.log_level)
    runtime = Runtime.build("enrollment", outbox=tables.outbox, inbox=tables.inbox,
                            settings=settings)
    app = web.create_app("enrollment", [api.blp], runtime.ready_checks())
    app.extensions["runtime"] = runtime
    return app
