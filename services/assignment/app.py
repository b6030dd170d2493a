"""The assignment API's app factory (gunicorn: `services.assignment.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from services.assignment import api, tables
from shared import logs, web
from shared.runtime import Runtime
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure("assignment", settings.log_level)
    runtime = Runtime.build("assignment", outbox=tables.outbox, inbox=tables.inbox,
                            settings=settings)
    controls = [api.simulator] if settings.simulator_controls else []
    app = web.create_app("assignment", [api.blp, *controls], runtime.ready_checks())
    app.extensions["runtime"] = runtime
    return app
