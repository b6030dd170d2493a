"""The analytics worker: counts every event of the topic exactly once."""

from __future__ import annotations

from services.analytics import handlers, tables
from shared import logs
from shared.runtime import Runtime, serve
from shared.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    logs.configure("analytics", settings.log_level)
    runtime = Runtime.build("analytics", inbox=tables.inbox, settings=settings)
    dispatcher = runtime.dispatcher({}, fallback=handlers.count, on_duplicate=handlers.duplicate)
    return serve(runtime, runtime.consumer(dispatcher), None)
